"""Building variants with the real backends: a registry from (mode, backend) to a builder.

Every builder returns the .tflite bytes and the exact backend settings used, which are
written beside the model. Calibrated converter modes calibrate the float .tflite once
and then quantize it, which is what `TFLiteConverter.convert()` does internally; the
result is byte-identical to the bare converter with the same data (tested), but a new
mode costs a quantization pass instead of a full conversion.

Only the backends' own calls are wrapped (`_backend_call`): what they raise becomes a one-line
`ConversionError` for that variant. A bug in this module is not a backend failure and
propagates as itself.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from quant_core import _quiet
from quant_core.calibration import NestedStates
from quant_core.env import installed_version
from quant_core.errors import ConversionError, InputError, QuantError, first_line
from quant_core.inputs.models import SourceModel
from quant_core.inputs.tflite_info import custom_ops
from quant_core.modes import Backend, IOType, Mode
from quant_core.recipe import Recipe
from quant_core.tasks import POSTPROCESS_OP


@dataclass(frozen=True)
class Built:
    """A built variant: model bytes and the backend settings that produced them."""

    model: bytes
    settings: dict[str, Any]


class CalibratedModels:
    """Per-source memo of calibration; a larger calibration set feeds only its extra rows.

    One fed converter calibrator serves every calibrated converter mode: `Calibrate()` gives
    the float model with activation statistics (quantized per mode by `mlir_quantize`) and
    `QuantizeModel()` gives the 16x8 model, with no second pass over the data. Asked for data
    whose leading rows it already fed (`Workbench.calibration_data` nests them), it feeds
    only the remaining rows into that calibrator; its logger keeps a running min/max per
    tensor, so the result is the same as feeding every row to a fresh one (tested). The
    LiteRT Quantizer's results are kept per recipe and resumed the same way.
    """

    def __init__(self) -> None:
        self._fed: NestedStates[Any] = NestedStates(in_place=True)  # a calibrator holds only its latest rows
        self._calibrated: dict[str, bytes] = {}
        self._litert: NestedStates[Any] = NestedStates(in_place=False)

    def calibrator(self, source: SourceModel, data: np.ndarray, digest: str) -> Any:
        """The converter's Calibrator with `data` already fed through the float model."""
        return self._fed.get(data, digest, start=lambda rows: _tf_feed(_tf_new_calibrator(source), rows),
                             extend=_tf_feed)

    def get(self, source: SourceModel, data: np.ndarray, digest: str) -> bytes:
        """The float model with activation statistics recorded from `data`."""
        if digest not in self._calibrated:
            fed = self.calibrator(source, data, digest)
            with _backend_call(Backend.TF_CONVERTER):
                self._calibrated[digest] = bytes(fed._calibrator.Calibrate())  # pylint: disable=protected-access
        return self._calibrated[digest]

    def litert(self, quantizer: Any, source: SourceModel, data: np.ndarray, digest: str) -> Any:
        """The LiteRT Quantizer's calibration result for `data` under `quantizer`'s recipe.

        A result for the leading rows of `data` under the same recipe is resumed with the
        remaining rows (`previous_calibration_result`); the Quantizer folds samples one at a
        time into its statistics, so this equals calibrating on all rows at once.
        """
        def calibrate(previous: Any, rows: np.ndarray) -> Any:
            samples = _litert_samples(backend_model(source.float_tflite), rows)
            with _backend_call(Backend.LITERT_QUANTIZER):
                return quantizer.calibrate(samples, previous_calibration_result=previous,
                                           num_threads=os.cpu_count() or 1)

        recipe = json.dumps(quantizer.get_quantization_recipe(), sort_keys=True, default=str)
        return self._litert.get(data, digest, start=lambda rows: calibrate(None, rows), extend=calibrate,
                                group=recipe)


Builder = Callable[[SourceModel, Recipe, "np.ndarray | None", str, CalibratedModels], Built]


def build_variant(source: SourceModel, recipe: Recipe, calibration: np.ndarray | None, calibration_digest: str,
                  calibrated: CalibratedModels) -> Built:
    """Builds one variant from a resolved recipe.

    Raises:
        InputError: the recipe keeps in float layers this model does not have (`check_float_layers`).
        ConversionError: the backend refused or failed on this model.
    """
    if recipe.float_layers:
        check_float_layers([recipe], graph_layers(source.float_tflite))
    return _REGISTRY[(recipe.mode, recipe.backend_used)](source, recipe, calibration, calibration_digest, calibrated)


def graph_layers(float_model: bytes) -> tuple[str, ...]:
    """The output tensor names of every op of a float .tflite, in execution order: the names `float_layers` takes.

    Both backends find a float layer by these names (the TF converter's `denylisted_nodes`,
    the LiteRT Quantizer's op scope) and both ignore a name they do not find, so a recipe is
    checked against them before it is built (`check_float_layers`). They are read from the
    model the backends are given (`backend_model`): weights stored as float16 are constants
    there, not layers.
    """
    return tuple(dict.fromkeys(name for _, names in _op_outputs(backend_model(float_model)) for name in names))


def _op_outputs(model: bytes) -> list[tuple[str, list[str]]]:
    """Every op of the model in execution order: its type and its output tensor names."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType  # pylint: disable=import-outside-toplevel

    with _backend_call(Backend.LITERT_QUANTIZER):  # a model the interpreter cannot read: one line, not a traceback
        interp = Interpreter(model_content=bytes(model),
                             experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        names = {t["index"]: t["name"] for t in interp.get_tensor_details()}
        ops = interp._get_ops_details()  # pylint: disable=protected-access
    return [(op["op_name"], [names[i] for i in op["outputs"] if i in names]) for op in ops]


def _refuse_custom_ops(source: SourceModel, recipe: Recipe) -> None:
    """Refuses, in one line with the way out, a calibrated build a custom op of the model makes impossible.

    The converter's calibrator runs builtin kernels only, so it cannot run a custom op that
    only LiteRT's runtime provides (MediaPipe's Convolution2DTransposeBias, run by XNNPACK);
    TFLite_Detection_PostProcess is one the builtin resolver registers. The
    LiteRT Quantizer keeps ops it does not know in float, so its int8 would not be integer-only
    unless those layers are kept in float on purpose.

    Raises:
        ConversionError: the model has a custom op this recipe cannot build around.
    """
    model = backend_model(source.float_tflite)
    ops = tuple(op for op in custom_ops(model) if op != POSTPROCESS_OP)  # builtin kernels include that one
    if not ops or (recipe.backend_used is Backend.LITERT_QUANTIZER and (recipe.mode is not Mode.INT8
                                                                        or recipe.float_layers)):
        return
    kinds = " and ".join(ops)
    layers = _few([name for op, names in _op_outputs(model) if op in ops for name in names])
    around = f"int8 with {layers} (the custom op's output) kept in float"
    if recipe.backend_used is Backend.LITERT_QUANTIZER:
        raise ConversionError(f"the LiteRT Quantizer cannot quantize the custom op {kinds}, so int8 would not be "
                              f"integer-only; build {around}, or int16x8 or dynamic_range, which keep it in float")
    way_out = {Mode.INT8: f"choose the LiteRT Quantizer backend and build {around}",
               Mode.INT8_FLOAT_IO: f"no other backend builds it: build int16x8, or {around}, with the LiteRT Quantizer",
               Mode.INT16X8: "choose the LiteRT Quantizer backend, which keeps it in float"}[recipe.mode]
    raise ConversionError(f"the TF converter cannot calibrate the custom op {kinds} (its calibrator runs builtin "
                          f"kernels only; LiteRT's XNNPACK runs this op); {way_out}")


def check_float_layers(recipes: Sequence[Recipe], layers: Sequence[str]) -> None:
    """Refuses recipes that keep in float layers not among `layers` (the model's `graph_layers`), in one line.

    A backend given a name its model does not have builds the mode without it, byte for
    byte: the variant would look like a float-layer variant and be plain int8.

    Raises:
        InputError: naming the first missing layers.
    """
    known = set(layers)
    for recipe in recipes:
        missing = [name for name in recipe.float_layers if name not in known]
        if missing:
            n = len(recipe.float_layers)
            which = ("the layer it keeps in float is" if n == 1 else f"the {n} layers it keeps in float are"
                     if len(missing) == n else f"{len(missing)} of the {n} layers it keeps in float are")
            raise InputError(f"{recipe.name}: {which} not in this model ({_few([m.split(';')[0] for m in missing])}); "
                             "they were chosen on another model: choose them again on this one")


def match_layers(wanted: Sequence[str], layers: Sequence[str]) -> tuple[str, ...]:
    """The model's layers (`graph_layers`) meant by names a person typed: an exact tensor name, or a Keras layer name.

    A Keras layer name ('conv_b', as the Layers page lists it) means every op whose output
    tensor name has a part from that layer ('outlier_1/conv_b_1/Relu;outlier_1/conv_b_1/BiasAdd'
    for conv_b): the layer may have become several ops, or been fused with its neighbours.

    Raises:
        InputError: a name that matches no layer, with the model's layer names to choose from.
    """
    chosen: list[str] = []
    unknown: list[str] = []
    for name in (n.strip() for n in wanted):
        found = [name] if name in layers else [t for t in layers if name in _keras_names(t) or name in t.split(";")]
        chosen += found
        if not found and name:
            unknown.append(name)
    if unknown:
        readable = list(dict.fromkeys(_keras_name(t.split(";")[0]) for t in layers))
        raise InputError(f"no layer named {_few(unknown)} in this model; its layers include {_few(readable, 8)} "
                         "(a Keras layer name, or a tensor name from a recipe's float_layers)")
    return tuple(dict.fromkeys(chosen))


def _keras_names(tensor: str) -> set[str]:
    """The Keras layer names in a tensor name: 'model_1/conv_b_1/Relu;model_1/conv_b_1/BiasAdd' -> {'conv_b'}."""
    return {_keras_name(part) for part in tensor.split(";")}


def _keras_name(part: str) -> str:
    """The Keras layer of one op name: 'model_1/conv_b_1/Relu' -> 'conv_b' (Keras 3's '_1' suffix dropped)."""
    steps = part.split("/")
    return re.sub(r"_\d+$", "", steps[1] if len(steps) >= 2 else steps[0])


def _few(names: Sequence[str], n: int = 3) -> str:
    """The first n names, then how many more."""
    shown = ", ".join(names[:n])
    return shown + (f" and {len(names) - n} more" if len(names) > n else "")


# --- the float model as the backends read it --------------------------------------------

def backend_model(float_model: bytes) -> bytes:
    """The float .tflite as both backends are given it: the same function, in a form they can read.

    MediaPipe's and other float .tflite files store their weights as float16 constants behind
    DEQUANTIZE ops: a float model's storage. The backends take those weights for activations
    (the LiteRT Quantizer leaves them unquantized and the variant unchanged; the converter's
    quantizer fails, or crashes the process in 16x8), so here they become float32 constants
    and the DEQUANTIZE ops go. A model without a signature (the LiteRT Quantizer calibrates
    through one) gets 'serving_default' over the main graph's inputs and outputs. A model that
    needs neither is returned as it is; the float32 variant of a .tflite is always the file
    unchanged.
    """
    return _backend_model(bytes(float_model))


@functools.lru_cache(maxsize=4)  # a source's model is asked for at every build and calibration step
def _backend_model(model: bytes) -> bytes:
    """`backend_model` of bytes."""
    if not _needs_rewrite(model):
        return model
    import flatbuffers  # pylint: disable=import-outside-toplevel

    tree = schema.ModelT.InitFromPackedBuf(model, 0)
    for code in tree.operatorCodes:  # files older than TF 2.4 name their ops in the deprecated field only
        code.builtinCode = max(code.builtinCode, code.deprecatedBuiltinCode)
    dequantize = {i for i, c in enumerate(tree.operatorCodes) if c.builtinCode == schema.BuiltinOperator.DEQUANTIZE}
    for g, graph in enumerate(tree.subgraphs):
        graph.operators = [op for op in graph.operators if not _unpack_float16(tree, graph, op, dequantize)]
        index = _drop_unused_tensors(graph)
        for entry in (e for sig in _or_empty(tree.signatureDefs) if sig.subgraphIndex == g
                      for e in (*_or_empty(sig.inputs), *_or_empty(sig.outputs))):
            entry.tensorIndex = index[entry.tensorIndex]
    _drop_unused_buffers(tree)
    _drop_unused_codes(tree)
    if not tree.signatureDefs:
        tree.signatureDefs = [_default_signature(tree.subgraphs[0])]
    builder = flatbuffers.Builder(2 * len(model))
    builder.Finish(tree.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _needs_rewrite(model: bytes) -> bool:
    """Whether the model has no signature, ops named the pre-2.4 way, or a DEQUANTIZE of a float16 constant.

    Read without unpacking the model. The LiteRT Quantizer reads an op's type from the current
    field only, so an older file's ops would all read as ADD and none be quantized.
    """
    root = schema.Model.GetRootAs(model, 0)
    codes = [root.OperatorCodes(i) for i in range(root.OperatorCodesLength())]
    if not root.SignatureDefsLength() or any(c.BuiltinCode() < c.DeprecatedBuiltinCode() for c in codes):
        return True
    dequantize = {i for i, c in enumerate(codes) if c.BuiltinCode() == schema.BuiltinOperator.DEQUANTIZE}
    for g in range(root.SubgraphsLength()):
        graph = root.Subgraphs(g)
        for o in range(graph.OperatorsLength()):
            op = graph.Operators(o)
            if op.OpcodeIndex() in dequantize and op.InputsLength():
                tensor = graph.Tensors(op.Inputs(0))
                if tensor.Type() == schema.TensorType.FLOAT16 and root.Buffers(tensor.Buffer()).DataLength():
                    return True
    return False


def _unpack_float16(tree: Any, graph: Any, op: Any, dequantize: set[int]) -> bool:
    """Turns a DEQUANTIZE of a float16 constant into a float32 constant (its output); True when it did."""
    if op.opcodeIndex not in dequantize or len(op.inputs) != 1 or len(op.outputs) != 1:
        return False
    source, target = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    data = tree.buffers[source.buffer].data
    if source.type != schema.TensorType.FLOAT16 or target.type != schema.TensorType.FLOAT32 or data is None \
            or not len(data) or source.sparsity is not None:
        return False
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(np.frombuffer(bytes(data), "<f2").astype("<f4").tobytes(), np.uint8)
    tree.buffers.append(buffer)
    target.buffer = len(tree.buffers) - 1
    return True


def _drop_unused_tensors(graph: Any) -> dict[int, int]:
    """Removes the tensors no op, input or output of the graph refers to; returns the rest's new numbers by old."""
    lists = ("inputs", "outputs", "intermediates")
    used = {int(i) for i in (*_or_empty(graph.inputs), *_or_empty(graph.outputs))}
    for op in graph.operators:
        used.update(int(i) for name in lists for i in _or_empty(getattr(op, name)))
    kept = [i for i in range(len(graph.tensors)) if i in used]
    index = {old: new for new, old in enumerate(kept)} | {-1: -1}  # -1: an omitted optional input
    graph.tensors = [graph.tensors[i] for i in kept]
    for op in graph.operators:
        for name in lists:
            if getattr(op, name) is not None:
                setattr(op, name, [index[int(i)] for i in getattr(op, name)])
    graph.inputs = [index[int(i)] for i in _or_empty(graph.inputs)]
    graph.outputs = [index[int(i)] for i in _or_empty(graph.outputs)]
    return index


def _drop_unused_buffers(tree: Any) -> None:
    """Empties the buffers no tensor or metadata refers to any more (the float16 weights); indices stay."""
    used = {t.buffer for graph in tree.subgraphs for t in graph.tensors}
    used |= {m.buffer for m in tree.metadata or ()} | {int(b) for b in _or_empty(tree.metadataBuffer)}
    for i, buffer in enumerate(tree.buffers):
        if i not in used:
            buffer.data = None


def _or_empty(vector: Any) -> Any:
    """An optional vector of the object API (None when absent) as something to iterate."""
    return () if vector is None else vector


def _drop_unused_codes(tree: Any) -> None:
    """Removes the operator codes no op uses (DEQUANTIZE, once unpacked): the converter's calibrator refuses any it
    has no kernel for."""
    used = sorted({op.opcodeIndex for graph in tree.subgraphs for op in graph.operators})
    index = {old: new for new, old in enumerate(used)}
    tree.operatorCodes = [tree.operatorCodes[i] for i in used]
    for graph in tree.subgraphs:
        for op in graph.operators:
            op.opcodeIndex = index[op.opcodeIndex]


def _default_signature(graph: Any) -> Any:
    """A 'serving_default' signature over the graph's inputs and outputs, named after their tensors."""
    def entries(indices: Sequence[int]) -> list[Any]:
        maps = []
        for i in indices:
            entry = schema.TensorMapT()
            entry.name, entry.tensorIndex = _text(graph.tensors[i].name) or f"tensor_{i}", i
            maps.append(entry)
        return maps

    signature = schema.SignatureDefT()
    signature.signatureKey, signature.subgraphIndex = "serving_default", 0
    signature.inputs, signature.outputs = entries(graph.inputs), entries(graph.outputs)
    return signature


def _text(name: bytes | str | None) -> str:
    """A flatbuffer string as str."""
    return name.decode("utf-8") if isinstance(name, bytes) else name or ""


@contextmanager
def _backend_call(backend: Backend) -> Iterator[None]:
    """Around a third-party backend call: its output goes to stderr, its exceptions become ConversionError.

    Backends raise RuntimeError, ConverterError, ValueError and more for models they cannot
    handle; that is this variant failing, reported in one line. Only backend calls go here.
    """
    try:
        with _quiet.stdout_to_stderr():
            yield
    except QuantError:
        raise
    except Exception as err:
        raise ConversionError(f"{backend} failed: {first_line(err) or type(err).__name__}") from err


def _version(package: str) -> str:
    """Installed version of a package ('tensorflow' also as tensorflow-cpu), or '?'."""
    return installed_version(package) or installed_version(package.replace("tensorflow", "tensorflow-cpu")) or "?"


def _rep_dataset(data: np.ndarray) -> Callable[[], Any]:
    """A representative dataset yielding one [1, H, W, C] float32 sample at a time."""
    def gen():
        for i in range(len(data)):
            yield [data[i : i + 1]]
    return gen


def _tf_new_calibrator(source: SourceModel) -> Any:
    """A converter Calibrator on the float model, nothing fed yet."""
    module = _tf_calibrator()
    with _backend_call(Backend.TF_CONVERTER):
        return module.Calibrator(module.add_intermediate_tensors(backend_model(source.float_tflite)))


def _tf_feed(fed: Any, rows: np.ndarray) -> Any:
    """Feeds `rows` through a converter Calibrator (its min/max statistics grow) and returns it."""
    with _backend_call(Backend.TF_CONVERTER):
        fed._feed_tensors(_rep_dataset(rows), resize_input=True)  # pylint: disable=protected-access
    return fed


def _tf_calibrator():
    """The TFLite converter's calibrator module (imports TensorFlow)."""
    _quiet.silence_tf_logging()
    from tensorflow.lite.python.optimize import calibrator  # pylint: disable=import-outside-toplevel
    return calibrator


def _tf_settings(route: str, **converter: Any) -> dict[str, Any]:
    """Settings record for a TF converter build."""
    return {"backend": f"tensorflow {_version('tensorflow')} TFLiteConverter", "route": route,
            "converter_settings": converter}


# --- TF converter builders -------------------------------------------------------------

def _tf_float32(source: SourceModel, recipe: Recipe, *_: Any) -> Built:
    if source.is_tflite:
        return Built(source.float_tflite, {"backend": "none", "route": "the uploaded float32 .tflite, unchanged"})
    return Built(source.float_tflite, _tf_settings(
        f"TFLiteConverter.from_{'keras_model' if source.info.format != 'saved_model' else 'saved_model'}",
        optimizations=[], exclude_conversion_metadata=True))


def _tf_full_conversion(*, float16: bool) -> Builder:
    """A builder that reruns the converter from the source graph (dynamic range, or float16 weights)."""
    def build(source: SourceModel, recipe: Recipe, *_: Any) -> Built:
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        with _backend_call(recipe.backend_used):
            conv = source.new_converter()
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            if float16:
                conv.target_spec.supported_types = [tf.float16]
            conv._experimental_disable_per_channel = not recipe.per_channel  # pylint: disable=protected-access
            model = bytes(conv.convert())
        types = {"supported_types": ["float16"]} if float16 else {}
        return Built(model, _tf_settings(
            "TFLiteConverter.convert() from the source model", optimizations=["DEFAULT"],
            _experimental_disable_per_channel=not recipe.per_channel, exclude_conversion_metadata=True, **types))
    return build


def _tf_int8(source: SourceModel, recipe: Recipe, data: np.ndarray | None, digest: str,
             calibrated: CalibratedModels) -> Built:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from tensorflow.lite.python import convert, lite  # pylint: disable=import-outside-toplevel

    assert data is not None
    _refuse_custom_ops(source, recipe)
    io = {IOType.INT8: tf.int8, IOType.UINT8: tf.uint8, IOType.FLOAT32: tf.float32}[recipe.io]
    calibrated_model = calibrated.get(source, data, digest)
    with _backend_call(recipe.backend_used):
        model = convert.mlir_quantize(
            calibrated_model, disable_per_channel=not recipe.per_channel,
            input_data_type=io, output_data_type=io, denylisted_nodes=list(recipe.float_layers) or None)
        model = bytes(lite._deduplicate_readonly_buffers(model))  # pylint: disable=protected-access
    equivalent: dict[str, Any] = {"optimizations": ["DEFAULT"], "representative_dataset": f"{len(data)} samples",
                                  "_experimental_disable_per_channel": not recipe.per_channel}
    if recipe.mode is Mode.INT8 and not recipe.float_layers:
        equivalent |= {"target_spec.supported_ops": ["TFLITE_BUILTINS_INT8"],
                       "inference_input_type": recipe.io.value, "inference_output_type": recipe.io.value}
    elif recipe.mode is Mode.INT8:  # float layers need float kernels: the int8-only op set would refuse them
        equivalent |= {"inference_input_type": recipe.io.value, "inference_output_type": recipe.io.value}
    if recipe.float_layers:
        equivalent["QuantizationDebugOptions.denylisted_nodes"] = list(recipe.float_layers)
    return Built(model, _tf_settings(
        "float .tflite -> calibrator.calibrate(representative data) -> convert.mlir_quantize "
        "(the converter's own post-training steps)", **equivalent))


def _tf_int16x8(source: SourceModel, recipe: Recipe, data: np.ndarray | None, digest: str,
                calibrated: CalibratedModels) -> Built:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from tensorflow.lite.python import lite  # pylint: disable=import-outside-toplevel

    assert data is not None
    if recipe.float_layers:  # the converter's 16x8 step (QuantizeModel) has no way to skip ops
        raise InputError("the TFLite converter cannot keep layers in float in 16x8; choose the LiteRT Quantizer "
                         "backend, which can")
    if not recipe.per_channel:  # the converter's QuantizeModel fails: "Quantized dimension ... Got 3 and 0"
        raise InputError("the TFLite converter builds 16x8 with per-channel weights only; turn per-channel weights "
                         "back on, or choose the LiteRT Quantizer backend, which builds per-tensor 16x8")
    _refuse_custom_ops(source, recipe)
    io = np.dtype((tf.int16 if recipe.io_type is IOType.INT16 else tf.float32).as_numpy_dtype()).num
    fed = calibrated.calibrator(source, data, digest)
    with _backend_call(recipe.backend_used):
        # What Calibrator.calibrate_and_quantize does after feeding the data.
        model = fed._calibrator.QuantizeModel(  # pylint: disable=protected-access
            io, io, False, np.dtype(np.int16).num, np.dtype(np.int64).num, not recipe.per_channel, False)
        model = bytes(lite._deduplicate_readonly_buffers(model))  # pylint: disable=protected-access
    return Built(model, _tf_settings(
        "float .tflite -> calibrator fed once with the representative data -> QuantizeModel "
        "(the converter's own 16x8 step, calibrate_and_quantize)",
        optimizations=["DEFAULT"], representative_dataset=f"{len(data)} samples",
        **{"target_spec.supported_ops": ["EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8"],
           "inference_input_type": recipe.io.value, "inference_output_type": recipe.io.value,
           "_experimental_disable_per_channel": not recipe.per_channel}))


# --- LiteRT Quantizer builders ---------------------------------------------------------

def _litert(configure: Callable[[Any, Any], None]) -> Builder:
    """A builder that applies `configure(quantizer, granularity)` and quantizes."""
    def build(source: SourceModel, recipe: Recipe, data: np.ndarray | None, digest: str,
              calibrated: CalibratedModels) -> Built:
        from litert_quantizer import Quantizer, qtyping  # pylint: disable=import-outside-toplevel

        _refuse_custom_ops(source, recipe)
        grains = qtyping.QuantGranularity
        granularity = grains.CHANNELWISE if recipe.per_channel else grains.TENSORWISE
        result = None
        with _backend_call(recipe.backend_used):
            quantizer = Quantizer(backend_model(source.float_tflite))
            configure(quantizer, granularity)
            _keep_in_float(quantizer, recipe.float_layers)
            needs_calibration = quantizer.need_calibration
        if needs_calibration:
            assert data is not None, "calibrated LiteRT recipes come with calibration data"
            result = calibrated.litert(quantizer, source, data, digest)
        with _backend_call(recipe.backend_used):
            model = quantizer.quantize(result, enable_progress_bar=False, enable_progress_report=False).quantized_model
            quantizer_recipe = quantizer.get_quantization_recipe()
        settings = {"backend": f"litert-quantizer {_version('litert-quantizer')} Quantizer", "recipe": quantizer_recipe}
        if data is not None and result is not None:
            settings["calibration_samples"] = len(data)
        return Built(bytes(model), settings)
    return build


def _keep_in_float(quantizer: Any, names: tuple[str, ...]) -> None:
    """Per-op overrides after the global config (the last matching entry wins): these ops are not quantized.

    The LiteRT Quantizer matches a regex against an op's scope, its output tensor names
    joined and ended by ';'; each name is matched whole.
    """
    if not names:
        return
    from litert_quantizer.algorithm_manager import AlgorithmName  # pylint: disable=import-outside-toplevel

    scope = "(^|;)(" + "|".join(re.escape(n) for n in names) + ");"
    quantizer.update_quantization_recipe(regex=scope, operation_name=_all_ops(),
                                         algorithm_key=AlgorithmName.NO_QUANTIZE)


def _litert_samples(float_tflite: bytes, data: np.ndarray) -> dict[str, list[dict[str, np.ndarray]]]:
    """Calibration data keyed by the model's signature and input name."""
    from ai_edge_litert.interpreter import Interpreter  # pylint: disable=import-outside-toplevel

    signatures = Interpreter(model_content=float_tflite).get_signature_list()
    key = next(iter(signatures))
    input_name = signatures[key]["inputs"][0]
    return {key: [{input_name: data[i : i + 1]} for i in range(len(data))]}


def _all_ops():
    from litert_quantizer import qtyping  # pylint: disable=import-outside-toplevel
    return qtyping.TFLOperationName.ALL_SUPPORTED


def _weight_only(q: Any, granularity: Any) -> None:
    q.add_weight_only_config(regex=".*", operation_name=_all_ops(), num_bits=8, granularity=granularity)


def _dynamic(q: Any, granularity: Any) -> None:
    q.add_dynamic_config(regex=".*", operation_name=_all_ops(), num_bits=8, granularity=granularity)


def _float16(q: Any, granularity: Any) -> None:
    from litert_quantizer.algorithm_manager import AlgorithmName  # pylint: disable=import-outside-toplevel
    q.add_weight_only_config(regex=".*", operation_name=_all_ops(), num_bits=16,
                             algorithm_key=AlgorithmName.FLOAT_CASTING)


def _static(activation_bits: int) -> Callable[[Any, Any], None]:
    def configure(q: Any, granularity: Any) -> None:
        q.add_static_config(regex=".*", operation_name=_all_ops(), activation_num_bits=activation_bits,
                            weight_num_bits=8, weight_granularity=granularity)
    return configure


_TF, _LQ = Backend.TF_CONVERTER, Backend.LITERT_QUANTIZER

_REGISTRY: dict[tuple[Mode, Backend], Builder] = {
    (Mode.FLOAT32, _TF): _tf_float32,
    (Mode.WEIGHT_ONLY, _LQ): _litert(_weight_only),
    (Mode.DYNAMIC_RANGE, _TF): _tf_full_conversion(float16=False),
    (Mode.DYNAMIC_RANGE, _LQ): _litert(_dynamic),
    (Mode.FLOAT16, _TF): _tf_full_conversion(float16=True),
    (Mode.FLOAT16, _LQ): _litert(_float16),
    (Mode.INT8, _TF): _tf_int8,
    (Mode.INT8, _LQ): _litert(_static(8)),
    (Mode.INT8_FLOAT_IO, _TF): _tf_int8,
    (Mode.INT16X8, _TF): _tf_int16x8,
    (Mode.INT16X8, _LQ): _litert(_static(16)),
}

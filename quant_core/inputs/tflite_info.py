"""Facts read from a .tflite model without TensorFlow: its structure, constants and input scaling."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from quant_core.errors import InputError, first_line

_SCALING_OPS = {"MUL", "DIV", "ADD", "SUB"}

MAX_TENSOR_BYTES = 2**31  # what one tensor may declare: far above any image classifier's largest activation
_TENSOR_TYPES = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
_BUILTIN_OPS = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
_OPTION_TYPES = ({v for k, v in vars(schema.BuiltinOptions).items() if not k.startswith("_")},
                 {v for k, v in vars(schema.BuiltinOptions2).items() if not k.startswith("_")})
# Ops whose options name does not follow from the op's name.
_OPTIONS_NAMES = {"AVERAGE_POOL_2D": "Pool2DOptions", "MAX_POOL_2D": "Pool2DOptions", "L2_POOL_2D": "Pool2DOptions",
                  "L2_NORMALIZATION": "L2NormOptions", "UNIDIRECTIONAL_SEQUENCE_RNN": "SequenceRNNOptions",
                  "CONV_3D_TRANSPOSE": "Conv3DOptions"}


def _activation_options() -> dict[int, int]:
    """Builtin op -> its options type, for ops whose options carry a fused activation (ADD, FULLY_CONNECTED, ...).

    The TF converter's quantizer reads that activation without checking the options are
    there: a FULLY_CONNECTED or ADD without them (or FULLY_CONNECTED with another op's)
    crashes the process.
    """
    types = {k.lower(): v for k, v in vars(schema.BuiltinOptions).items() if not k.startswith("_")}
    tables = {t.__name__.lower(): t for t in vars(schema).values() if isinstance(t, type)}
    found = {}
    for op, name in _BUILTIN_OPS.items():
        options = _OPTIONS_NAMES.get(name, name.replace("_", "") + "Options").lower()  # CONV_2D: conv2doptions
        if options in types and hasattr(tables.get(options), "FusedActivationFunction"):
            found[op] = types[options]
    return found


_ACTIVATION_OPTIONS = _activation_options()
# Bytes per element of the types whose constant data has a fixed size (strings, resources,
# variants and packed sub-byte types are left to the interpreter).
_ELEMENT_BYTES = {"FLOAT32": 4, "FLOAT16": 2, "BFLOAT16": 2, "FLOAT64": 8, "INT8": 1, "UINT8": 1, "INT16": 2,
                  "UINT16": 2, "INT32": 4, "UINT32": 4, "INT64": 8, "UINT64": 8, "BOOL": 1, "COMPLEX64": 8,
                  "COMPLEX128": 16, "FLOAT8_E4M3FN": 1, "FLOAT8_E5M2": 1}
# What Python's flatbuffers reader raises when an offset in a corrupt file points outside it.
_READ_ERRORS = (struct.error, TypeError, ValueError, IndexError, OverflowError)

Shape = tuple[int | None, ...]


@dataclass(frozen=True)
class Interface:
    """The main graph's inputs and outputs as the file declares them (None for a dynamic dimension)."""

    inputs: tuple[Shape, ...]
    outputs: tuple[Shape, ...]


class _Corrupt(Exception):
    """A structural problem, in words (the detail of the InputError `check_structure` raises)."""


def check_structure(model: bytes, *, name: str) -> Interface:
    """Checks every index, shape, type and size an interpreter or quantizer trusts, before either sees the file.

    The LiteRT interpreter verifies the flatbuffer's layout but trusts many of its values:
    a model with no subgraph list, or a signature or intermediate tensor index past the end,
    crashes the process (a segfault) in the interpreter or the quantizers; others end in
    Python errors far from the file. Each is refused here in one line naming the field.

    Raises:
        InputError: "<name>: cannot load the model: <what is wrong>; expected ...".
    """
    data = bytes(model)
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise InputError(f"{name}: cannot load the model: not a TFLite flatbuffer (no TFL3 identifier); "
                         "expected a .tflite file")
    try:
        return _check_model(data)
    except _Corrupt as err:
        raise InputError(f"{name}: cannot load the model: {err}") from None
    except _READ_ERRORS:
        raise InputError(f"{name}: cannot load the model: its flatbuffer points outside the file "
                         "(truncated or corrupt); expected a .tflite file as a converter wrote it") from None


def _check_model(data: bytes) -> Interface:
    """Every table the interpreter and the quantizers read, in the order they read them."""
    model = schema.Model.GetRootAs(data, 0)
    if model.Version() != 3:
        raise _Corrupt(f"schema version {model.Version()}; expected 3 (the TFLite schema LiteRT reads)")
    buffers = [_buffer_bytes(data, model.Buffers(b), b) for b in range(_count(data, model.BuffersLength(), "buffers"))]
    codes = [_builtin(model.OperatorCodes(c), c) for c in range(_count(data, model.OperatorCodesLength(),
                                                                        "operator codes"))]
    graphs = _count(data, model.SubgraphsLength(), "subgraphs")
    if not graphs:
        raise _Corrupt("the model has no subgraph; expected at least one (the main graph)")
    tensors = [_check_graph(data, model.Subgraphs(s), s, buffers, codes) for s in range(graphs)]
    _check_metadata(data, model, len(buffers))
    _check_signatures(data, model, tensors)
    return _interface(data, model.Subgraphs(0), buffers)


def _count(data: bytes, length: int, what: str, width: int = 4) -> int:
    """A vector's length, refused when the file is too small to hold it (a corrupt length is not iterated)."""
    if length * width > len(data):
        raise _Corrupt(f"its list of {what} claims {length} entries, more than the file can hold")
    return length


def _indices(data: bytes, vector: Any, what: str) -> list[int]:
    """An int vector read as a list (the generated reader returns 0 for an absent vector)."""
    if isinstance(vector, int):
        return []
    _count(data, len(vector), what)
    return [int(v) for v in vector]


def _buffer_bytes(data: bytes, buffer: Any, index: int) -> int:
    """How many bytes of data a buffer holds, inside the flatbuffer or after it (offset and size)."""
    offset, size = buffer.Offset(), buffer.Size()
    if offset > 1:  # data stored after the flatbuffer (models over 2 GB); 1 marks "not placed yet"
        if offset + size > len(data):
            raise _Corrupt(f"buffer {index} points at bytes {offset}..{offset + size}, past the end of the "
                           f"{len(data)}-byte file; expected data inside the file")
        return int(size)
    return _count(data, buffer.DataLength(), f"buffer {index}'s bytes", width=1)


def _check_text(value: bytes | None, what: str) -> None:
    """A name the interpreter hands to Python as str: it must be UTF-8."""
    try:
        (value or b"").decode("utf-8")
    except UnicodeDecodeError:
        raise _Corrupt(f"{what} is not UTF-8 text; expected names as a converter writes them") from None


def _builtin(code: Any, index: int) -> int:
    """The builtin op of an operator code: one this runtime knows (CUSTOM for a custom op with a UTF-8 name)."""
    _check_text(code.CustomCode(), f"the name of custom operator code {index}")
    builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())  # the interpreter reads the larger of the two
    if builtin not in _BUILTIN_OPS:
        raise _Corrupt(f"operator code {index} names builtin op {builtin}, which this LiteRT runtime does not know; "
                       f"expected one of its {len(_BUILTIN_OPS)} builtin ops")
    return int(builtin)


def _check_graph(data: bytes, graph: Any, index: int, buffers: list[int], codes: list[int]) -> int:
    """Tensors, the graph's inputs and outputs, and every operator's tensor indices; returns the tensor count."""
    where = f"subgraph {index}"
    _check_text(graph.Name(), f"the name of {where}")
    tensors = _count(data, graph.TensorsLength(), f"{where}'s tensors")
    for t in range(tensors):
        _check_tensor(data, graph.Tensors(t), f"tensor {t} of {where}", buffers)
    for kind, vector in (("inputs", graph.InputsAsNumpy()), ("outputs", graph.OutputsAsNumpy())):
        _check_range(_indices(data, vector, f"{where}'s {kind}"), tensors, f"{where}'s {kind}", lowest=0)
    for o in range(_count(data, graph.OperatorsLength(), f"{where}'s operators")):
        op, at = graph.Operators(o), f"operator {o} of {where}"
        if not 0 <= op.OpcodeIndex() < len(codes):
            raise _Corrupt(f"{at} uses operator code {op.OpcodeIndex()}; the model has {len(codes)}")
        _check_options(op, at, codes[op.OpcodeIndex()])
        _check_range(_indices(data, op.InputsAsNumpy(), f"{at}'s inputs"), tensors, f"{at}'s inputs", lowest=-1)
        _check_range(_indices(data, op.OutputsAsNumpy(), f"{at}'s outputs"), tensors, f"{at}'s outputs", lowest=-1)
        _check_range(_indices(data, op.IntermediatesAsNumpy(), f"{at}'s intermediates"), tensors,
                     f"{at}'s intermediates", lowest=0)
    return tensors


def _check_options(op: Any, at: str, builtin: int) -> None:
    """Known option types, each with its table, and an op's own options where they carry its fused activation.

    The TF converter's quantizer crashes on an unknown type, a type without its table, or
    a FULLY_CONNECTED, ADD, SUB or MUL without its own options.
    """
    unions = ((op.BuiltinOptionsType(), op.BuiltinOptions(), "builtin options"),
              (op.BuiltinOptions2Type(), op.BuiltinOptions2(), "second builtin options"))
    for (kind, table, what), known in zip(unions, _OPTION_TYPES):
        if kind not in known:
            raise _Corrupt(f"{at} has {what} of type {kind}; expected a type from 0 to {max(known)}")
        if kind and table is None:
            raise _Corrupt(f"{at} declares {what} of type {kind} but holds none; expected the options table")
    expected = _ACTIVATION_OPTIONS.get(builtin)
    if expected is not None and op.BuiltinOptionsType() != expected:
        raise _Corrupt(f"{at} ({_BUILTIN_OPS[builtin]}) has options of type {op.BuiltinOptionsType()}; expected its "
                       f"own options (type {expected}), which hold its fused activation")


def _check_range(indices: list[int], tensors: int, what: str, *, lowest: int) -> None:
    """Tensor indices within the graph (-1 marks an omitted optional tensor where `lowest` allows it)."""
    bad = next((i for i in indices if not lowest <= i < tensors), None)
    if bad is not None:
        valid = f"an index from 0 to {tensors - 1}" if tensors else "none: the subgraph has no tensors"
        optional = " (or -1 for an omitted optional tensor)" if lowest < 0 and tensors else ""
        raise _Corrupt(f"{what} name tensor {bad}; expected {valid}{optional}")


def _check_tensor(data: bytes, tensor: Any, where: str, buffers: list[int]) -> None:
    """Name, type, shape, size, buffer and quantization of one tensor."""
    _check_text(tensor.Name(), f"the name of {where}")
    kind = _TENSOR_TYPES.get(tensor.Type())
    if kind is None:
        raise _Corrupt(f"{where} has type {tensor.Type()}; expected one of TFLite's tensor types "
                       f"(0-{max(_TENSOR_TYPES)})")
    shape = _indices(data, tensor.ShapeAsNumpy(), f"{where}'s shape")
    signature = _indices(data, tensor.ShapeSignatureAsNumpy(), f"{where}'s shape signature")
    if any(d < 0 for d in shape) or (signature and (
            len(signature) != len(shape) or any(s != d and s != -1 for s, d in zip(signature, shape)))):
        raise _Corrupt(f"{where} has shape {shape} and shape signature {signature or shape}; expected sizes of 0 or "
                       "more, the signature the same but for -1 where a dimension is dynamic")
    size = _ELEMENT_BYTES[kind] * int(np.prod(shape, dtype=object)) if kind in _ELEMENT_BYTES else None
    if size is not None and size > MAX_TENSOR_BYTES:
        raise _Corrupt(f"{where} declares shape {shape}, {size:,} bytes; expected at most {MAX_TENSOR_BYTES:,}")
    if tensor.Buffer() >= len(buffers):
        raise _Corrupt(f"{where} uses buffer {tensor.Buffer()}; the model has {len(buffers)} buffers")
    held = buffers[tensor.Buffer()]
    if held and size is not None and tensor.Sparsity() is None and held < size:
        raise _Corrupt(f"{where} ({kind}, shape {shape}) needs {size} bytes of constant data; its buffer "
                       f"{tensor.Buffer()} holds {held}")
    if tensor.ExternalBuffer():
        raise _Corrupt(f"{where} keeps its data in an external file; expected a self-contained .tflite")
    _check_quantization(tensor.Quantization(), where, shape)


def _check_quantization(params: Any, where: str, shape: list[int]) -> None:
    """As many scales as zero points, per channel along an existing dimension."""
    if params is None:
        return
    scales, zero_points = params.ScaleLength(), params.ZeroPointLength()
    if scales != zero_points:
        raise _Corrupt(f"{where} has {scales} quantization scale(s) and {zero_points} zero point(s); "
                       "expected as many of each")
    if scales > 1 and not 0 <= params.QuantizedDimension() < len(shape):
        raise _Corrupt(f"{where} is quantized along dimension {params.QuantizedDimension()} of shape {shape}; "
                       "expected an existing dimension")


def _check_metadata(data: bytes, model: Any, buffers: int) -> None:
    """Metadata entries point at existing buffers."""
    entries = [model.Metadata(m) for m in range(_count(data, model.MetadataLength(), "metadata"))]
    for m, entry in enumerate(entries):
        if entry.Name() is None:  # the TF converter's quantizer crashes on a nameless entry
            raise _Corrupt(f"metadata entry {m} has no name; expected a named entry")
        _check_text(entry.Name(), f"the name of metadata entry {m}")
    named = [entry.Buffer() for entry in entries]
    listed = _indices(data, model.MetadataBufferAsNumpy(), "metadata buffers")
    bad = next((b for b in named + listed if not 0 <= b < buffers), None)
    if bad is not None:
        raise _Corrupt(f"its metadata points at buffer {bad}; the model has {buffers} buffers")


def _check_signatures(data: bytes, model: Any, tensors: list[int]) -> None:
    """Each signature names an existing subgraph and tensors of it."""
    for s in range(_count(data, model.SignatureDefsLength(), "signatures")):
        sig = model.SignatureDefs(s)
        _check_text(sig.SignatureKey(), f"the key of signature {s}")
        graph = sig.SubgraphIndex()
        if not 0 <= graph < len(tensors):
            raise _Corrupt(f"signature {s} names subgraph {graph}; the model has {len(tensors)}")
        maps = [sig.Inputs(i) for i in range(_count(data, sig.InputsLength(), f"signature {s}'s inputs"))]
        maps += [sig.Outputs(i) for i in range(_count(data, sig.OutputsLength(), f"signature {s}'s outputs"))]
        for entry in maps:
            _check_text(entry.Name(), f"an input or output name of signature {s}")
        _check_range([m.TensorIndex() for m in maps], tensors[graph], f"signature {s}'s inputs and outputs", lowest=0)


def _interface(data: bytes, graph: Any, buffers: list[int]) -> Interface:
    """The main graph's declared input and output shapes; each output must be computed, an input or a constant."""
    inputs = _indices(data, graph.InputsAsNumpy(), "inputs")
    outputs = _indices(data, graph.OutputsAsNumpy(), "outputs")
    produced = {o for k in range(graph.OperatorsLength())
                for o in _indices(data, graph.Operators(k).OutputsAsNumpy(), "outputs")}
    for index in outputs:
        if index not in produced and index not in inputs and not buffers[graph.Tensors(index).Buffer()]:
            raise _Corrupt(f"its output (tensor {index}) is computed by no operator; expected a graph that computes it")
    return Interface(inputs=tuple(_declared(data, graph.Tensors(i)) for i in inputs),
                     outputs=tuple(_declared(data, graph.Tensors(i)) for i in outputs))


def _declared(data: bytes, tensor: Any) -> Shape:
    """A tensor's shape as declared: its signature (-1 for dynamic) when present, else its shape."""
    signature = _indices(data, tensor.ShapeSignatureAsNumpy(), "shape signature")
    return tuple(None if d < 0 else d for d in signature or _indices(data, tensor.ShapeAsNumpy(), "shape"))


def plain_interpreter(model: bytes) -> Interpreter:
    """An interpreter with builtin kernels only (no delegate hides the ops), for reading the model's ops and constants.

    A model with custom ops that only the full runtime provides (MediaPipe's
    Convolution2DTransposeBias, which XNNPACK runs) cannot be allocated with builtin kernels
    alone; when the full runtime loads it, its interpreter comes back unallocated: its ops,
    tensor details and constants read the same, nothing runs.

    Raises:
        InputError: neither the builtin kernels nor the full runtime load the model.
    """
    try:
        interp = _builtin_interpreter(model)
        interp.allocate_tensors()
    except (RuntimeError, ValueError) as err:
        if custom_ops(model) and _runtime_loads(model):
            return _builtin_interpreter(model)
        detail = first_line(err) or type(err).__name__
        raise InputError(f"the LiteRT interpreter cannot load this model: {detail}") from None
    return interp


def _builtin_interpreter(model: bytes) -> Interpreter:
    """An interpreter with builtin kernels only, not allocated."""
    return Interpreter(model_content=bytes(model),
                       experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)


def _runtime_loads(model: bytes) -> bool:
    """Whether the full runtime (default delegates, their custom ops) allocates the model."""
    try:
        Interpreter(model_content=bytes(model)).allocate_tensors()
    except (RuntimeError, ValueError):
        return False
    return True


def custom_ops(model: bytes) -> tuple[str, ...]:
    """The names of the custom ops the model's main graph uses, in order of first use.

    None for most models, and for bytes that are not a readable model (`check_structure` says why).
    """
    try:
        root = schema.Model.GetRootAs(bytes(model), 0)
        codes = [root.OperatorCodes(i) for i in range(root.OperatorCodesLength())]
        names = {i: (c.CustomCode() or b"?").decode("utf-8", "replace") for i, c in enumerate(codes)
                 if max(c.BuiltinCode(), c.DeprecatedBuiltinCode()) == schema.BuiltinOperator.CUSTOM}
        graph = root.Subgraphs(0)
        used = [graph.Operators(o).OpcodeIndex() for o in range(graph.OperatorsLength())] if graph else []
    except _READ_ERRORS:
        return ()
    return tuple(dict.fromkeys(names[i] for i in used if i in names))


def constant_tensors(interp: Interpreter) -> set[int]:
    """Indices of tensors that no op produces and that are not model inputs."""
    produced = {o for op in interp._get_ops_details() for o in op["outputs"]}  # pylint: disable=protected-access
    inputs = {d["index"] for d in interp.get_input_details()}
    used = {i for op in interp._get_ops_details() for i in op["inputs"] if i >= 0}  # pylint: disable=protected-access
    return used - produced - inputs


def float_param_count(model: bytes) -> int:
    """Number of float weight elements (the parameter count of a float model)."""
    interp = plain_interpreter(model)
    details = {t["index"]: t for t in interp.get_tensor_details()}
    return int(sum(
        int(np.prod(details[i]["shape"])) for i in constant_tensors(interp)
        if np.dtype(details[i]["dtype"]).kind == "f"
    ))


def input_scale_factor(model: bytes) -> float | None:
    """The constant the input is first multiplied by (or divided by), if any.

    A Keras Rescaling(1/255) or Normalization layer becomes MUL/SUB/DIV ops on the input;
    a tiny factor means the model expects raw 0..255 pixels.
    """
    interp = plain_interpreter(model)
    constants = constant_tensors(interp)
    current = interp.get_input_details()[0]["index"]
    for _ in range(3):  # follow at most a short chain such as SUB -> MUL
        op = next((o for o in interp._get_ops_details() if current in o["inputs"]), None)  # pylint: disable=protected-access
        if op is None or op["op_name"] not in _SCALING_OPS:
            return None
        other = [i for i in op["inputs"] if i != current and i in constants]
        if not other:
            return None
        value = np.asarray(interp.get_tensor(other[0]), dtype=np.float64)
        if op["op_name"] in ("MUL", "DIV") and value.size:
            factor = float(np.median(np.abs(value)))
            return 1.0 / factor if op["op_name"] == "DIV" and factor else factor
        current = op["outputs"][0]
    return None

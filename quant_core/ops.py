"""Op inventory of a .tflite model: which ops compute in int8, int16 or float."""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass

import numpy as np

from quant_core.inputs.tflite_info import constant_tensors, plain_interpreter


class OpKind(enum.StrEnum):
    """How an op computes, from the dtypes of its tensors."""

    INT8 = "int8"
    INT16 = "int16"  # 16x8: int16 activations
    HYBRID = "hybrid"  # int8 weights, float activations
    FLOAT = "float"
    QUANTIZE = "quantize"  # float -> integer at a boundary
    DEQUANTIZE = "dequantize"  # integer -> float at a boundary, or float16 weights -> float32 (`float16_weights`)
    INDEX = "index"  # int32/int64 shape and index arithmetic (SHAPE, STRIDED_SLICE, PACK): never quantized

    @property
    def uses_float(self) -> bool:
        """True for kinds whose arithmetic is in float (what integer-only hardware cannot run)."""
        return self in (OpKind.FLOAT, OpKind.HYBRID)


_BOUNDARY = {"QUANTIZE": OpKind.QUANTIZE, "DEQUANTIZE": OpKind.DEQUANTIZE}


@dataclass(frozen=True)
class OpCount:
    """How many ops of one type run with one compute kind."""

    op: str
    kind: OpKind
    count: int


@dataclass(frozen=True)
class OpInventory:
    """Counts of ops by compute kind, with per-op detail.

    `integer_only` is True when no op reads or writes a float tensor: the model can run
    on integer-only accelerators (NPUs, DSPs, Edge TPU) with no CPU fallback.

    `float16_weights` counts the DEQUANTIZE ops (among `dequantize`) that turn weights stored as
    float16 into float32: a float model's storage (the float16 mode's, and MediaPipe's float
    models'), unpacked once when the model loads, not a boundary between integer and float.
    """

    total: int
    float: int
    int8: int
    int16: int
    hybrid: int
    quantize: int
    dequantize: int
    index: int
    integer_only: bool
    by_op: tuple[OpCount, ...]
    float16_weights: int = 0

    @property
    def integer_dequantize(self) -> int:
        """DEQUANTIZE ops that turn integer tensors into float (quantized weights, or activations at a boundary)."""
        return self.dequantize - self.float16_weights

    def of(self, kind: OpKind) -> int:
        """How many ops compute with this kind."""
        return getattr(self, kind.value)

    @property
    def compute(self) -> int:
        """How many ops do the model's arithmetic (not QUANTIZE/DEQUANTIZE conversions, not index ops)."""
        return self.total - self.quantize - self.dequantize - self.index


def op_inventory(model: bytes) -> OpInventory:
    """Classifies every op of the model by the dtypes of its tensors."""
    interp = plain_interpreter(model)
    dtypes = {t["index"]: np.dtype(t["dtype"]) for t in interp.get_tensor_details()}
    constants = constant_tensors(interp)
    counts: Counter[tuple[str, OpKind]] = Counter()
    touches_float, float16_weights = False, 0
    for op in interp._get_ops_details():  # pylint: disable=protected-access
        name = op["op_name"]
        if name == "DELEGATE":
            continue
        ins = [dtypes[i] for i in op["inputs"] if i >= 0 and i in dtypes]
        outs = [dtypes[i] for i in op["outputs"] if i in dtypes]
        touches_float |= any(d.kind == "f" for d in ins + outs)
        counts[(name, _kind(name, ins, outs))] += 1
        float16_weights += name == "DEQUANTIZE" and ins == [np.float16] and op["inputs"][0] in constants
    by_kind: Counter[OpKind] = Counter()
    for (_, kind), n in counts.items():
        by_kind[kind] += n
    return OpInventory(
        total=sum(counts.values()), float=by_kind[OpKind.FLOAT], int8=by_kind[OpKind.INT8],
        int16=by_kind[OpKind.INT16], hybrid=by_kind[OpKind.HYBRID], quantize=by_kind[OpKind.QUANTIZE],
        dequantize=by_kind[OpKind.DEQUANTIZE], index=by_kind[OpKind.INDEX],
        integer_only=not touches_float and bool(counts),
        by_op=tuple(OpCount(op, kind, n) for (op, kind), n in sorted(counts.items())), float16_weights=float16_weights,
    )


def _kind(name: str, ins: list[np.dtype], outs: list[np.dtype]) -> OpKind:
    """Compute kind of one op from its input and output dtypes."""
    if name in _BOUNDARY:
        return _BOUNDARY[name]
    out = outs[0] if outs else (ins[0] if ins else np.dtype(np.float32))
    if out.kind == "f":
        return OpKind.HYBRID if any(d in (np.int8, np.uint8) for d in ins) else OpKind.FLOAT
    if out in (np.int32, np.int64, np.bool_):
        return OpKind.INDEX  # shapes, indices, argmax: whatever they read, nothing of theirs is quantized
    if out == np.int16 or any(d == np.int16 for d in ins):
        return OpKind.INT16
    return OpKind.INT8


_ACCELERATOR = "an integer-only NPU, DSP or Edge TPU"
# How each compute kind reads in a sentence: (one op, several ops).
_SHARE = {OpKind.FLOAT: ("runs in float", "run in float"),
          OpKind.HYBRID: ("is hybrid, int8 weights with float activations",
                          "are hybrid, int8 weights with float activations"),
          OpKind.INT8: ("runs in int8", "run in int8"),
          OpKind.INT16: ("runs in int16 (int16 activations)", "run in int16 (int16 activations)")}


def integer_verdict(ops: OpInventory) -> str:
    """A few words on whether the model is integer-only, from its ops (a heading's tail)."""
    if ops.integer_only:
        return "integer-only"
    floating = ops.float + ops.hybrid
    if floating:
        return f"not integer-only: {floating} of {ops.compute} compute ops in float{' or hybrid' if ops.hybrid else ''}"
    return "not integer-only: integer compute, float input/output"


def describe_ops(ops: OpInventory, *, input_dtype: str | None, output_dtype: str | None) -> str:
    """Where the model computes in float and what that means for integer-only hardware, in plain sentences.

    The description of a built variant's compute comes from here, from the model's own ops: a
    variant whose mode promises integer-only ops but keeps layers in float is described as it is.
    """
    shares, interface, converts = _shares(ops), _interface(input_dtype, output_dtype), _conversions(ops)
    if ops.integer_only:
        where = (f"{_ACCELERATOR} runs it whole" if not ops.int16 else
                 "integer-only hardware with int16 kernels runs it whole (many NPUs have int8 kernels only)")
        return f"Integer-only: {shares}{interface}. {_sentence(where)}."
    if not ops.float + ops.hybrid:
        edges = f"converted by {converts}" if converts else "with float tensors at the edges"
        return (f"Integer compute, float edges: {shares}{interface}, {edges}, so it is not integer-only: "
                f"{_ACCELERATOR} needs the CPU there.")
    stored = _float16_storage(ops)
    if not ops.int8 + ops.int16:
        plus = f", plus {converts} ops" if converts else ""
        return (f"Float compute: {shares}{plus}{stored}{interface}. "
                f"Not integer-only: for CPUs and GPUs, not for {_ACCELERATOR}.")
    plus = f"; {converts} convert between float and integer" if converts else ""
    return (f"Not integer-only: {shares}{plus}{stored}{interface}. "
            f"{_sentence(_ACCELERATOR)} cannot run it whole: its float ops fall back to the CPU.")


def _sentence(text: str) -> str:
    """`text` with its first letter capitalized (and nothing else changed)."""
    return text[:1].upper() + text[1:]


def _shares(ops: OpInventory) -> str:
    """'all 6 compute ops run in int8', or 'of 6 compute ops, 1 runs in float (CONV_2D) and 5 run in int8'.

    Float and hybrid ops are named in a mix: they are what keeps the model off integer-only hardware.
    """
    present = [(kind, ops.of(kind)) for kind in _SHARE if ops.of(kind)]
    if len(present) == 1 and present[0][1] > 1:
        kind, n = present[0]
        return f"all {n} compute ops {_SHARE[kind][1]}"  # naming every op type would say nothing more
    parts = [f"{n} {_SHARE[kind][n > 1]}{_names(ops, kind)}" for kind, n in present]
    listed = ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else "".join(parts)
    return f"of {ops.compute} compute op{'s' if ops.compute != 1 else ''}, {listed or 'none'}"


def _names(ops: OpInventory, kind: OpKind) -> str:
    """' (CONV_2D ×2, MEAN)': the op types of a float kind with their counts; empty for integer kinds."""
    if not kind.uses_float:
        return ""
    return " (" + ", ".join(f"{c.op} ×{c.count}" if c.count > 1 else c.op for c in ops.by_op if c.kind is kind) + ")"


def _conversions(ops: OpInventory) -> str:
    """'1 QUANTIZE and 1 DEQUANTIZE' (empty when there are none); DEQUANTIZE of float16 weights is storage, not this."""
    return " and ".join(f"{n} {name}" for name, n in (("QUANTIZE", ops.quantize),
                                                         ("DEQUANTIZE", ops.integer_dequantize)) if n)


def _float16_storage(ops: OpInventory) -> str:
    """', weights stored as float16 (113 DEQUANTIZE ops turn them into float32 when the model loads)', or empty."""
    n = ops.float16_weights
    if not n:
        return ""
    return f", weights stored as float16 ({n} DEQUANTIZE op{'s turn' if n > 1 else ' turns'} them into float32 " \
           "when the model loads)"


def _interface(input_dtype: str | None, output_dtype: str | None) -> str:
    """'; int8 input and output' (empty when the dtypes are unknown)."""
    if input_dtype is None or output_dtype is None:
        return ""
    if input_dtype == output_dtype:
        return f"; {input_dtype} input and output"
    return f"; {input_dtype} input, {output_dtype} output"


def per_tensor_hybrid_depthwise(model: bytes) -> int:
    """How many hybrid DEPTHWISE_CONV_2D ops (float input, int8 filter) have one scale for several channels.

    LiteRT's hybrid depthwise kernel reads one filter scale per output channel; with a
    per-tensor filter it reads past the single scale, so outputs change from one
    interpreter to the next (measured: two fresh interpreters disagree by up to 0.9 in
    probability on the same image).
    """
    interp = plain_interpreter(model)
    details = {t["index"]: t for t in interp.get_tensor_details()}
    count = 0
    for op in interp._get_ops_details():  # pylint: disable=protected-access
        if op["op_name"] != "DEPTHWISE_CONV_2D" or len(op["inputs"]) < 2:
            continue
        data, weights = details[op["inputs"][0]], details[op["inputs"][1]]
        scales = weights["quantization_parameters"]["scales"]
        if (np.dtype(data["dtype"]).kind == "f" and np.dtype(weights["dtype"]) == np.int8
                and len(scales) == 1 and weights["shape"][-1] > 1):
            count += 1
    return count

"""Op inventory of a .tflite model: which ops compute in int8, int16 or float."""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass

import numpy as np

from quant_core.tflite_info import plain_interpreter


class OpKind(enum.StrEnum):
    """How an op computes, from the dtypes of its tensors."""

    INT8 = "int8"
    INT16 = "int16"  # 16x8: int16 activations
    HYBRID = "hybrid"  # int8 weights, float activations
    FLOAT = "float"
    QUANTIZE = "quantize"  # float -> integer at a boundary
    DEQUANTIZE = "dequantize"  # integer -> float at a boundary
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

    def of(self, kind: OpKind) -> int:
        """How many ops compute with this kind."""
        return getattr(self, kind.value)


def op_inventory(model: bytes) -> OpInventory:
    """Classifies every op of the model by the dtypes of its tensors."""
    interp = plain_interpreter(model)
    dtypes = {t["index"]: np.dtype(t["dtype"]) for t in interp.get_tensor_details()}
    counts: Counter[tuple[str, OpKind]] = Counter()
    touches_float = False
    for op in interp._get_ops_details():  # pylint: disable=protected-access
        name = op["op_name"]
        if name == "DELEGATE":
            continue
        ins = [dtypes[i] for i in op["inputs"] if i >= 0 and i in dtypes]
        outs = [dtypes[i] for i in op["outputs"] if i in dtypes]
        touches_float |= any(d.kind == "f" for d in ins + outs)
        counts[(name, _kind(name, ins, outs))] += 1
    by_kind: Counter[OpKind] = Counter()
    for (_, kind), n in counts.items():
        by_kind[kind] += n
    return OpInventory(
        total=sum(counts.values()), float=by_kind[OpKind.FLOAT], int8=by_kind[OpKind.INT8],
        int16=by_kind[OpKind.INT16], hybrid=by_kind[OpKind.HYBRID], quantize=by_kind[OpKind.QUANTIZE],
        dequantize=by_kind[OpKind.DEQUANTIZE], index=by_kind[OpKind.INDEX],
        integer_only=not touches_float and bool(counts),
        by_op=tuple(OpCount(op, kind, n) for (op, kind), n in sorted(counts.items())),
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

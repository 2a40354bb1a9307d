"""Op inventory of a .tflite model: which ops compute in int8, int16 or float."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

_BOUNDARY = {"QUANTIZE", "DEQUANTIZE"}


@dataclass(frozen=True)
class OpCount:
    """How many ops of one type run with one compute kind."""

    op: str
    kind: str  # "int8", "int16", "hybrid" (int8 weights, float activations), "float", "quantize", "dequantize"
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
    integer_only: bool
    by_op: tuple[OpCount, ...]


def op_inventory(model: bytes) -> OpInventory:
    """Classifies every op of the model by the dtypes of its tensors."""
    interp = Interpreter(
        model_content=bytes(model),
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interp.allocate_tensors()
    dtypes = {t["index"]: np.dtype(t["dtype"]) for t in interp.get_tensor_details()}
    counts: Counter[tuple[str, str]] = Counter()
    touches_float = False
    for op in interp._get_ops_details():  # pylint: disable=protected-access
        name = op["op_name"]
        if name == "DELEGATE":
            continue
        ins = [dtypes[i] for i in op["inputs"] if i >= 0 and i in dtypes]
        outs = [dtypes[i] for i in op["outputs"] if i in dtypes]
        touches_float |= any(d.kind == "f" for d in ins + outs)
        counts[(name, _kind(name, ins, outs))] += 1
    by_kind = Counter()
    for (_, kind), n in counts.items():
        by_kind[kind] += n
    return OpInventory(
        total=sum(counts.values()), float=by_kind["float"], int8=by_kind["int8"],
        int16=by_kind["int16"], hybrid=by_kind["hybrid"], quantize=by_kind["quantize"],
        dequantize=by_kind["dequantize"], integer_only=not touches_float and bool(counts),
        by_op=tuple(OpCount(op, kind, n) for (op, kind), n in sorted(counts.items())),
    )


def _kind(name: str, ins: list[np.dtype], outs: list[np.dtype]) -> str:
    """Compute kind of one op from its input and output dtypes."""
    if name in _BOUNDARY:
        return name.lower()
    out = outs[0] if outs else (ins[0] if ins else np.dtype(np.float32))
    if out.kind == "f":
        return "hybrid" if any(d in (np.int8, np.uint8) for d in ins) else "float"
    if out == np.int16 or any(d == np.int16 for d in ins):
        return "int16"
    return "int8"

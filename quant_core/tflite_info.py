"""Facts read from a .tflite model without TensorFlow: constants and input scaling."""

from __future__ import annotations

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

_SCALING_OPS = {"MUL", "DIV", "ADD", "SUB"}


def plain_interpreter(model: bytes) -> Interpreter:
    """An interpreter with builtin kernels only (no delegate hides the ops)."""
    interp = Interpreter(
        model_content=bytes(model),
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interp.allocate_tensors()
    return interp


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

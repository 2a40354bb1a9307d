"""Integer-only targets on their own kernels: TensorFlow Lite Micro and LiteRT's reference kernels.

Microcontrollers, NPUs and DSPs run neither XNNPACK nor x86 code. Two measurements stand in:

- `run_micro` runs a variant in TFLite Micro's Python interpreter (the `tflite-micro` package:
  the kernels and memory planner microcontrollers use). It names the ops TFLM has no kernel
  for, measures the tensor arena (TFLM's allocator records what it used; every image then runs
  in an interpreter given exactly that many bytes) and returns the outputs; flash is the
  model's bytes. `fits` says whether that fits a microcontroller's `Budget`.
- `run_reference` runs it on LiteRT's reference kernels (`BUILTIN_WITHOUT_DEFAULT_DELEGATES`),
  the portable C++ that a target without XNNPACK's optimized kernels is closer to.

TFLM explains failures only in C++ log lines on stderr (the Python error says "TFLM failed to
allocate tensors"), so they are captured at the file-descriptor level and turned into one
line. It stops at the first op it lacks, so each distinct op of the model is asked about
alone, in a two-op model that never reaches a kernel (`missing_ops`). An arena far too small
crashes the process (a kernel's Prepare reads an allocation that failed), so the arena is
never guessed low: the first interpreter gets a generous one (pages never touched cost no
memory) that grows by what TFLM says is missing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from quant_core.env import installed_version
from quant_core.errors import InputError, first_line

log = logging.getLogger(__name__)

PACKAGE = "tflite-micro"
KB = 2**10
MB = 2**20
_FIRST_ARENA = 4 * MB  # and at least TFLM's own default, 10x the model: head room for every kernel's state
_MAX_ARENA = 2**30  # no microcontroller comes near 1 GB of RAM; past it TFLM is not asked
_GROWTHS = 6  # arena retries after "Failed to resize buffer ... missing: N"
_PROBE_ARENA = 64 * KB  # a two-op model with no tensors needs a few hundred bytes
_UNKNOWN_OP = 10_000  # a builtin code past every schema's last op: TFLM refuses it as "out of range"
_ALLOCATED = re.compile(r"Arena allocation total (\d+) bytes")
_SHORT = re.compile(r"Failed to resize buffer\. Requested: \d+, available \d+, missing: (\d+)")
_UNPREPARED = re.compile(r"Node (\S+) \(number (\d+)\) failed to prepare")
_SOURCE_FILE = re.compile(r"^\S+\.(cc|h)(:\d+)?\s+")  # "tensorflow/lite/micro/kernels/x.cc:42 " before a message
_STDERR = threading.Lock()  # fd 2 is the process's: one capture at a time

Result = TypeVar("Result")


class _MicroFailure(Exception):
    """TFLM refused or failed; the message is TFLM's own log, as one line."""


@dataclass(frozen=True)
class MicroRun:
    """A variant run in TFLite Micro: what it needs on a microcontroller and what it computes there.

    Arena and flash are measured, not estimated: the arena is what TFLM's recording allocator
    used after allocating and running the first image (the greedy memory plan a
    microcontroller uses), and every image then ran in an interpreter given exactly that many
    bytes. On a device add up to 16 bytes if the arena buffer is not 16-byte aligned.
    """

    flash_bytes: int  # the model, which stays in flash on a microcontroller (TFLM's own code comes on top)
    arena_bytes: int | None = None  # the tensor arena, in RAM; None when it did not run
    missing_ops: tuple[str, ...] = ()  # builtin or custom ops TFLM has no kernel for, in the model's order
    error: str = ""  # one line; "" when every image ran
    outputs: tuple[np.ndarray, ...] = field(default=(), compare=False)  # float32 [images, ...], dequantized
    output_scales: tuple[float, ...] = ()  # each output's quantization step (0.0 for a float output)
    interpreter: str = ""  # "tflite-micro <version>"; "" when the package is not installed

    @property
    def ran(self) -> bool:
        """Whether every image ran (outputs are there)."""
        return not self.error

    def to_dict(self) -> dict[str, Any]:
        """Plain numbers and names for JSON (outputs left out: they are the caller's to score)."""
        return {"flash_bytes": self.flash_bytes, "arena_bytes": self.arena_bytes,
                "missing_ops": list(self.missing_ops), "error": self.error,
                "output_scales": list(self.output_scales), "interpreter": self.interpreter}


@dataclass(frozen=True)
class Budget:
    """A microcontroller's memory: RAM for TFLM's tensor arena, flash for the model.

    The default, 512 KB of RAM and 2 MB of flash, is a common mid-range part: an ESP32-S3 has
    512 KB of on-chip SRAM, MLPerf Tiny's reference board (STM32L4R5) 640 KB and 2 MB of
    flash. Smaller parts (nRF52840: 256 KB / 1 MB) and larger ones (STM32H743: 1 MB / 2 MB)
    are in `COMMON_BUDGETS`. The application's own buffers and stack need RAM too.
    """

    ram_bytes: int = 512 * KB
    flash_bytes: int = 2 * MB

    def __post_init__(self) -> None:
        for what, value in (("RAM", self.ram_bytes), ("flash", self.flash_bytes)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                usual = 512 * KB if what == "RAM" else 2 * MB
                raise InputError(f"expected a {what} budget of a positive number of bytes, got {value!r}; "
                                 f"try {usual} ({_size(usual)})")

    @property
    def label(self) -> str:
        """E.g. '512 KB RAM / 2 MB flash'."""
        return f"{_size(self.ram_bytes)} RAM / {_size(self.flash_bytes)} flash"


COMMON_BUDGETS = (Budget(256 * KB, MB), Budget(512 * KB, 2 * MB), Budget(MB, 2 * MB))


def available() -> str | None:
    """The installed `tflite-micro` version, or None when it is not installed (nothing is imported)."""
    return installed_version(PACKAGE)


def fits(run: MicroRun, budget: Budget) -> tuple[bool, str]:
    """Whether a run's arena fits the budget's RAM and its model the budget's flash, and one sentence saying so."""
    if not run.ran:
        return False, f"Does not run on a microcontroller: {run.error}."
    arena = run.arena_bytes or 0
    short = [f"the tensor arena needs {_size(arena)} of RAM ({_size(budget.ram_bytes)} available)"
             if arena > budget.ram_bytes else "",
             f"the model needs {_size(run.flash_bytes)} of flash ({_size(budget.flash_bytes)} available)"
             if run.flash_bytes > budget.flash_bytes else ""]
    if any(short):
        return False, f"Does not fit a {budget.label} microcontroller: {' and '.join(s for s in short if s)}."
    return True, (f"Fits a {budget.label} microcontroller: a {_size(arena)} tensor arena and a "
                  f"{_size(run.flash_bytes)} model.")


def run_micro(model: bytes, x: np.ndarray) -> MicroRun:
    """Runs every image of `x` (float32 model input, [images, ...]) in TFLite Micro; never raises for a model.

    Inputs are quantized with the input's scale and zero point, outputs dequantized, as the
    LiteRT runner does. A model TFLM cannot run comes back with `error` (and `missing_ops`
    when it lacks kernels) and no outputs.
    """
    model = bytes(model)
    version = available()
    if version is None:
        return MicroRun(flash_bytes=len(model), error=f"the {PACKAGE} package is not installed (pip install {PACKAGE})")
    run = MicroRun(flash_bytes=len(model), interpreter=f"{PACKAGE} {version}")
    try:
        missing = missing_ops(model)
        if missing:
            return replace(run, missing_ops=missing, error=f"TFLite Micro has no kernel for {', '.join(missing)}")
        _check_interface(model, x)
        arena = _measured_arena(model, x[:1])
        interpreter = _open(model, arena)  # the run itself proves the measured arena is enough
        outputs, scales = _run_all(interpreter, x, outputs=_interface(model)[1])
    except _MicroFailure as err:
        return replace(run, error=str(err))
    return replace(run, arena_bytes=arena, outputs=outputs, output_scales=scales)


def missing_ops(model: bytes) -> tuple[str, ...]:
    """The model's ops TFLite Micro has no kernel for (builtin names, or custom op names), in the model's order.

    Each distinct op code is asked about alone: TFLM looks up every op's kernel before any
    kernel runs, and stops at the first it lacks. Its probe model holds the op and then an op
    code no runtime knows; TFLM has the op when it gets as far as refusing the second.
    """
    root = schema.Model.GetRootAs(bytes(model), 0)
    graphs = [root.Subgraphs(g) for g in range(root.SubgraphsLength())]
    used = dict.fromkeys(g.Operators(o).OpcodeIndex() for g in graphs for o in range(g.OperatorsLength()))
    codes = [schema.OperatorCodeT.InitFromObj(root.OperatorCodes(i)) for i in used]
    return tuple(dict.fromkeys(_op_name(code) for code in codes if not _has_kernel(code)))


def run_reference(model: bytes, x: np.ndarray) -> tuple[np.ndarray, ...]:
    """Every output on LiteRT's reference kernels (no XNNPACK), float32 [images, ...], one image at a time.

    Raises:
        InputError: the reference kernels cannot load or run the model.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType  # pylint: disable=import-outside-toplevel

    try:
        interpreter = Interpreter(model_content=bytes(model),
                                  experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        detail = interpreter.get_input_details()[0]
        interpreter.resize_tensor_input(detail["index"], [1, *x.shape[1:]], strict=False)
        interpreter.allocate_tensors()
        detail, outs = interpreter.get_input_details()[0], interpreter.get_output_details()
        rows = []
        for image in x:
            interpreter.set_tensor(detail["index"], _quantize(image[None], detail["dtype"], *detail["quantization"]))
            interpreter.invoke()
            rows.append([_dequantize(interpreter.get_tensor(o["index"]), *o["quantization"]) for o in outs])
    except (RuntimeError, ValueError) as err:
        raise InputError(f"the reference kernels cannot run this model: {first_line(err) or type(err).__name__}") \
            from None
    return tuple(np.concatenate(parts) for parts in zip(*rows))


def max_difference(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> float:
    """The largest |a - b| over every value of every output (outputs in the same order and shapes)."""
    if len(a) != len(b) or any(np.shape(p) != np.shape(q) for p, q in zip(a, b)):
        raise ValueError(f"expected outputs of the same shapes, got {[np.shape(p) for p in a]} "
                         f"and {[np.shape(q) for q in b]}")
    gaps = [float(np.max(np.abs(np.asarray(p, np.float64) - np.asarray(q, np.float64)))) for p, q in zip(a, b)
            if np.size(p)]
    return max(gaps, default=0.0)


def _size(n: int) -> str:
    """Bytes as the tables show them (1 KB = 1024 bytes)."""
    return f"{n / MB:.1f} MB".replace(".0 MB", " MB") if n >= MB else f"{n / KB:.0f} KB"


# TFLM interpreters


@contextlib.contextmanager
def _stderr_captured() -> Iterator[list[str]]:
    """Collects what C++ writes to fd 2 during the block (TFLM's log); the list is filled when the block ends.

    Anything another thread writes to stderr meanwhile lands there too: it is logged at debug
    level with TFLM's lines. Only allocations are captured (milliseconds), never runs.
    """
    lines: list[str] = []
    with _STDERR, tempfile.TemporaryFile() as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(line.strip() for line in sink.read().decode("utf-8", "replace").splitlines() if line.strip())
            if lines:
                log.debug("TFLite Micro said:\n%s", "\n".join(lines))


def _micro(call: Callable[[], Result], doing: str) -> tuple[Result, list[str]]:
    """Calls into TFLM with its log captured; its errors become one `_MicroFailure` line."""
    with _stderr_captured() as lines:
        try:
            result = call()
        except (RuntimeError, ValueError, IndexError) as err:
            failure: Exception | None = err
        else:
            failure = None
    if failure is not None:
        raise _MicroFailure(f"TFLite Micro could not {doing} this model: {_reason(lines, failure)}")
    return result, lines


def _reason(lines: list[str], err: Exception) -> str:
    """The line of TFLM's log that says why (the node that failed to prepare, and its kernel's complaint)."""
    for k, line in enumerate(lines):
        node = _UNPREPARED.search(line)
        if node:
            why = _SOURCE_FILE.sub("", lines[k - 1]) if k else ""
            return f"its {node.group(1)} kernel refuses node {node.group(2)}" + (f" ({why.rstrip('.')})" if why else "")
    return (lines[0] if lines else first_line(err) or type(err).__name__).rstrip(".")


def _open(model: bytes, arena: int) -> Any:
    """A TFLM interpreter of `model` with tensors allocated in an arena of `arena` bytes."""
    from tflite_micro.python.tflite_micro import runtime  # pylint: disable=import-outside-toplevel

    interpreter, _ = _micro(lambda: runtime.Interpreter.from_bytes(model, arena_size=arena), "allocate")
    return interpreter


def _measured_arena(model: bytes, first: np.ndarray) -> int:
    """The arena TFLM's allocator records for `model` after running one image in a generous arena."""
    from tflite_micro.python.tflite_micro import runtime  # pylint: disable=import-outside-toplevel

    arena = max(_FIRST_ARENA, 10 * len(model))
    for _ in range(_GROWTHS):
        with _stderr_captured() as lines:
            try:
                interpreter = runtime.Interpreter.from_bytes(model, arena_size=arena)
            except RuntimeError as err:
                failure: Exception | None = err
            else:
                failure = None
        short = next((int(m.group(1)) for line in lines if (m := _SHORT.search(line))), None)
        if failure is None:
            break
        if short is None:
            raise _MicroFailure(f"TFLite Micro could not allocate this model: {_reason(lines, failure)}")
        arena += short + 64 * KB  # the planned activations plus room for what is allocated after them
        if arena > _MAX_ARENA:
            raise _MicroFailure(f"TFLite Micro needs a tensor arena over {_size(_MAX_ARENA)} for this model")
    else:
        raise _MicroFailure(f"TFLite Micro could not allocate this model in {_size(arena)}")
    _run_all(interpreter, first, outputs=1)
    _, said = _micro(interpreter.print_allocations, "report the arena of")
    used = next((int(m.group(1)) for line in said if (m := _ALLOCATED.search(line))), None)
    if used is None:
        raise _MicroFailure("TFLite Micro did not report the arena it used")
    return used


def _run_all(interpreter: Any, x: np.ndarray, *, outputs: int) -> tuple[tuple[np.ndarray, ...], tuple[float, ...]]:
    """Every image through a TFLM interpreter: each output dequantized, [images, ...], and its scale.

    Runs are not captured (stderr would be taken from other threads for as long as they
    last): a kernel failing at run time leaves its reason in the process's log.
    """
    detail = interpreter.get_input_details(0)
    scale, zero_point = _scale(detail)
    rows = []
    for image in x:
        try:
            interpreter.set_input(_quantize(image[None], detail["dtype"], scale, zero_point), 0)
            interpreter.invoke()
        except (RuntimeError, ValueError) as err:
            raise _MicroFailure(f"TFLite Micro could not run this model: {first_line(err).rstrip('.')}") from None
        rows.append([_dequantize(interpreter.get_output(k), *_scale(interpreter.get_output_details(k)))
                     for k in range(outputs)])
    scales = tuple(_scale(interpreter.get_output_details(k))[0] for k in range(outputs))
    return tuple(np.concatenate(parts) for parts in zip(*rows)), scales


def _scale(detail: dict[str, Any]) -> tuple[float, int]:
    """A TFLM tensor's per-tensor scale and zero point ((0.0, 0) when it is not quantized)."""
    q = detail["quantization_parameters"]
    return (float(q["scales"][0]), int(q["zero_points"][0])) if len(q["scales"]) else (0.0, 0)


# the model's interface and ops


def _interface(model: bytes) -> tuple[int, int]:
    """The main graph's number of inputs and outputs."""
    graph = schema.Model.GetRootAs(model, 0).Subgraphs(0)
    return graph.InputsLength(), graph.OutputsLength()


def _check_interface(model: bytes, x: np.ndarray) -> None:
    """One input of batch 1 (TFLM cannot resize) whose other dimensions are the images'."""
    graph = schema.Model.GetRootAs(model, 0).Subgraphs(0)
    if len(x) == 0:
        raise _MicroFailure("expected at least one image, got none")
    if graph.InputsLength() != 1:
        raise _MicroFailure(f"expected a model with one input, got {graph.InputsLength()}")
    shape = tuple(int(d) for d in graph.Tensors(graph.Inputs(0)).ShapeAsNumpy())
    if shape[:1] != (1,) or shape[1:] != tuple(x.shape[1:]):
        raise _MicroFailure(f"expected images of shape {list(shape[1:])} for TFLite Micro (one at a time, batch 1), "
                            f"got {list(x.shape[1:])}")


def _op_name(code: Any) -> str:
    """An operator code's builtin name, or its custom op's name."""
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    if builtin == schema.BuiltinOperator.CUSTOM:
        return (code.customCode or b"?").decode("utf-8", "replace")
    return next((k for k, v in vars(schema.BuiltinOperator).items() if v == builtin and not k.startswith("_")),
                f"builtin op {builtin}")


def _has_kernel(code: Any) -> bool:
    """Whether TFLM's op resolver has a kernel for an operator code (no kernel runs to find out)."""
    from tflite_micro.python.tflite_micro import runtime  # pylint: disable=import-outside-toplevel

    with _stderr_captured() as lines, contextlib.suppress(RuntimeError):
        runtime.Interpreter.from_bytes(_probe_model(code), arena_size=_PROBE_ARENA)
    return any("out of range" in line for line in lines)


def _probe_model(code: Any) -> bytes:
    """A model of two ops and no tensors: `code`'s op, then an op code past the schema's end."""
    import flatbuffers  # pylint: disable=import-outside-toplevel

    probe, unknown = schema.OperatorCodeT(), schema.OperatorCodeT()
    probe.builtinCode, probe.deprecatedBuiltinCode = code.builtinCode, code.deprecatedBuiltinCode
    probe.customCode, probe.version = code.customCode, code.version
    unknown.builtinCode = _UNKNOWN_OP
    unknown.deprecatedBuiltinCode = schema.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES
    graph = schema.SubGraphT()
    graph.tensors, graph.inputs, graph.outputs = [], [], []
    graph.operators = []
    for index in (0, 1):
        op = schema.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = index, [], []
        graph.operators.append(op)
    tree = schema.ModelT()
    tree.version, tree.operatorCodes, tree.subgraphs, tree.buffers = 3, [probe, unknown], [graph], [schema.BufferT()]
    builder = flatbuffers.Builder(1024)
    builder.Finish(tree.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


# quantized I/O, as quant_core.runner.TFLiteRunner does it


def _quantize(x: np.ndarray, dtype: Any, scale: float, zero_point: int) -> np.ndarray:
    """Float model input as the input tensor's dtype: quantized with its scale and zero point when integer."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(dtype)
    return np.ascontiguousarray(x, dtype=dtype)


def _dequantize(y: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """An output as float32 (a copy), dequantized when integer."""
    if y.dtype.kind in "iu" and scale:
        return ((y.astype(np.float32) - zero_point) * scale).astype(np.float32)
    return np.array(y, dtype=np.float32)

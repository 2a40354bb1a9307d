"""Running .tflite models with the LiteRT interpreter: float in, float out, honest timing."""

from __future__ import annotations

import ctypes
import ctypes.util
import statistics
import time
from dataclasses import dataclass

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from quant_core.errors import InputError, first_line
from quant_core.inputs.tflite_info import custom_ops
from quant_core.tasks import POSTPROCESS_OP, clear_past_count, postprocess_order

_MAX_BATCH = 64
_BATCH_ELEMENTS = 2_000_000  # input elements per batch: 64 small images, ~13 at 224x224x3


def batch_size(sample_shape: tuple[int, ...]) -> int:
    """Images per batch for one input shape: large inputs get small batches to bound memory."""
    return int(max(1, min(_MAX_BATCH, _BATCH_ELEMENTS // max(1, int(np.prod(sample_shape))))))


@dataclass(frozen=True)
class Latency:
    """Single-image latency of `invoke()` only (no preprocessing), after warm-up.

    `samples_ms` keeps every timed run (sorted) so that two variants can be compared with
    their spread, not only their medians; results stored before it existed have none.
    """

    median_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    runs: int
    warmup: int
    threads: int
    samples_ms: tuple[float, ...] = ()  # every timed run, sorted, rounded to 0.1 µs (empty in older results)

    @classmethod
    def of(cls, times: list[float] | tuple[float, ...], *, warmup: int, threads: int) -> Latency:
        """Statistics of timed runs (ms)."""
        ordered = tuple(sorted(round(t, 4) for t in times))  # what is stored is what every figure comes from
        return cls(median_ms=statistics.median(ordered), p90_ms=_quantile(ordered, 0.9),
                   mean_ms=statistics.fmean(ordered), min_ms=ordered[0], runs=len(ordered), warmup=warmup,
                   threads=threads, samples_ms=ordered)

    def merged(self, other: Latency) -> Latency:
        """Both measurements' runs as one (a variant timed again); statistics recomputed over all runs."""
        return Latency.of(self.samples_ms + other.samples_ms, warmup=self.warmup + other.warmup,
                          threads=self.threads)

    @property
    def spread_ms(self) -> tuple[float, float]:
        """The middle half of the runs (25th to 75th percentile); the median alone when no runs were kept."""
        if not self.samples_ms:
            return self.median_ms, self.median_ms
        return _quantile(self.samples_ms, 0.25), _quantile(self.samples_ms, 0.75)


def _quantile(ordered: tuple[float, ...] | list[float], q: float) -> float:
    """The run at quantile q of sorted runs (nearest rank: always a measured value)."""
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass(frozen=True)
class Memory:
    """What running one variant holds in memory, measured on the allocator (not estimated from parameter counts).

    As TFLite's own benchmark tool does, the interpreter's heap is read from glibc's
    allocator counters (`mallinfo2`: bytes in use, including large mmapped blocks) before
    the interpreter is created and after `allocate_tensors()` and one `invoke()` at batch 1.
    """

    model_bytes: int  # the flatbuffer, resident while the interpreter runs (in flash on a microcontroller)
    runtime_bytes: int  # heap the interpreter allocated: tensor arena, kernel scratch, delegate-packed weights

    @property
    def total_bytes(self) -> int:
        """What a phone holds while the model runs: the model and the interpreter's heap."""
        return self.model_bytes + self.runtime_bytes


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def _heap_reader():
    """glibc's mallinfo2 as a function returning bytes in use, or None where it does not exist (musl, macOS)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallinfo2 = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    mallinfo2.restype = _MallInfo2

    def in_use() -> int:
        info = mallinfo2()
        return int(info.uordblks + info.hblkhd)  # small chunks in use + blocks mmapped for large allocations

    return in_use


_HEAP_IN_USE = _heap_reader()


def measure_memory(model: bytes, *, num_threads: int = 1) -> Memory | None:
    """The heap a fresh interpreter of `model` holds after allocating and running one image (None off glibc).

    The model's bytes are created before the first reading, so `runtime_bytes` is only what
    the interpreter itself allocates; the input is zeros (memory does not depend on values).
    """
    if _HEAP_IN_USE is None:
        return None
    content = bytes(model)
    before = _HEAP_IN_USE()
    interpreter = Interpreter(model_content=content, num_threads=num_threads)
    interpreter.allocate_tensors()
    allocated = _HEAP_IN_USE()
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
    interpreter.invoke()
    ran = _HEAP_IN_USE()
    del interpreter
    return Memory(model_bytes=len(content), runtime_bytes=max(0, max(allocated, ran) - before))


class TFLiteRunner:
    """Owns one interpreter; quantizes inputs and dequantizes outputs from scale/zero point.

    Callers always pass float32 model input and receive float32 outputs, whatever the
    model's interface dtype.
    """

    def __init__(self, model: bytes, *, num_threads: int = 1) -> None:
        try:
            self._interpreter = Interpreter(model_content=bytes(model), num_threads=num_threads)
            self._interpreter.allocate_tensors()
        except (RuntimeError, ValueError) as err:
            detail = first_line(err) or type(err).__name__
            raise InputError(f"the LiteRT interpreter cannot load this model: {detail}") from None
        self.num_threads = num_threads
        inputs = self._interpreter.get_input_details()
        outputs = self._interpreter.get_output_details()
        if len(inputs) != 1:
            raise InputError(f"expected a model with one input, got {len(inputs)}")
        self._input, self._outputs = inputs[0], outputs
        self._output = outputs[0]
        self._batch = 0
        # TFLite_Detection_PostProcess's outputs (boxes, classes, scores, count): batch 1 only, rows past the count
        # left unwritten, so cleared after every run
        self._postprocess = postprocess_order([tuple(o["shape"]) for o in outputs]) \
            if POSTPROCESS_OP in custom_ops(model) else None
        self._singles = self._postprocess is not None  # else True once the model merges a batch's images

    @property
    def input_dtype(self) -> np.dtype:
        """dtype of the model's input tensor."""
        return np.dtype(self._input["dtype"])

    @property
    def output_dtype(self) -> np.dtype:
        """dtype of the model's first output tensor."""
        return np.dtype(self._output["dtype"])

    @property
    def input_shape(self) -> tuple[int | None, ...]:
        """Input shape with None for dynamic dimensions."""
        sig = self._input.get("shape_signature", self._input["shape"])
        return tuple(None if d < 0 else int(d) for d in sig)

    @property
    def output_shape(self) -> tuple[int | None, ...]:
        """First output's shape with None for dynamic dimensions."""
        sig = self._output.get("shape_signature", self._output["shape"])
        return tuple(None if d < 0 else int(d) for d in sig)

    @property
    def output_names(self) -> tuple[str, ...]:
        """Every output tensor's name, in the model's output order."""
        return tuple(str(d["name"]) for d in self._outputs)

    @property
    def output_steps(self) -> tuple[float, ...]:
        """Each output's quantization step (its scale; 0.0 for a float output), in output order."""
        return tuple(float(o["quantization"][0]) if np.dtype(o["dtype"]).kind in "iu" else 0.0
                     for o in self._outputs)

    @property
    def output_shapes(self) -> tuple[tuple[int | None, ...], ...]:
        """Every output's shape with None for dynamic dimensions, in the model's output order."""
        return tuple(tuple(None if d < 0 else int(d) for d in o.get("shape_signature", o["shape"]))
                     for o in self._outputs)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Runs a float32 batch [N, ...] and returns the first output, float32 [N, ...]."""
        return self.predict_all(x)[0]

    def predict_all(self, x: np.ndarray) -> tuple[np.ndarray, ...]:
        """Runs a float32 batch [N, ...] and returns every output, float32 [N, ...] each, in output order."""
        if len(x) == 0:
            return tuple(np.zeros((0, *o["shape"][1:]), np.float32) for o in self._outputs)
        step = batch_size(x.shape[1:])
        results = [self._run(x[i : i + step]) for i in range(0, len(x), step)]
        return tuple(np.concatenate(parts).astype(np.float32) for parts in zip(*results))

    def _run(self, batch: np.ndarray) -> tuple[np.ndarray, ...]:
        """Invokes on one batch, resizing the input (or falling back to one by one).

        A model whose graph fixes batch 1 inside (a reshape to [1, -1, K], as MediaPipe's
        detectors have) accepts a larger input but merges the images into one output row:
        such a model is run one image at a time from then on.
        """
        if len(batch) > 1 and not self._singles and self._batch != len(batch):
            try:
                self._resize(len(batch))
            except (RuntimeError, ValueError):
                self._singles = True
        if len(batch) > 1 and not self._singles:
            self._set_input(batch)
            self._invoke()
            got = tuple(self._get_output(o) for o in self._outputs)
            if all(len(g) == len(batch) for g in got):
                return got
            self._singles = True
        if len(batch) > 1:
            singles = [self._run(batch[i : i + 1]) for i in range(len(batch))]
            return tuple(np.concatenate(parts) for parts in zip(*singles))
        self._resize(1)
        self._set_input(batch)
        self._invoke()
        read = [self._get_output(o) for o in self._outputs]
        if self._postprocess is not None:
            clear_past_count(read, self._postprocess)
        return tuple(read)

    def _invoke(self) -> None:
        """One `invoke()`; the interpreter's own failures (kernels refusing a model) become InputError."""
        try:
            self._interpreter.invoke()
        except RuntimeError as err:
            detail = first_line(err) or type(err).__name__
            raise InputError(f"the LiteRT interpreter failed to run this model: {detail}") from None

    def _resize(self, n: int) -> None:
        """Resizes the batch dimension and reallocates tensors."""
        if self._batch == n:
            return
        shape = list(self._input["shape"])
        shape[0] = n
        self._interpreter.resize_tensor_input(self._input["index"], shape, strict=False)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]
        self._outputs = self._interpreter.get_output_details()
        self._output = self._outputs[0]
        self._batch = n

    def _set_input(self, batch: np.ndarray) -> None:
        """Quantizes float input with the tensor's scale and zero point when needed."""
        dtype = self.input_dtype
        if dtype.kind in "iu":
            scale, zero_point = self._input["quantization"]
            info = np.iinfo(dtype)
            batch = np.clip(np.round(batch / scale + zero_point), info.min, info.max).astype(dtype)
        else:
            batch = batch.astype(dtype)
        self._interpreter.set_tensor(self._input["index"], batch)

    def _get_output(self, detail: dict) -> np.ndarray:
        """Reads one output, dequantized to float32 (a copy: the interpreter reuses its buffers)."""
        out = self._interpreter.get_tensor(detail["index"])
        if out.dtype.kind in "iu":
            scale, zero_point = detail["quantization"]
            return ((out.astype(np.float32) - zero_point) * scale).astype(np.float32)
        return out.astype(np.float32)

    def measure_latency(
        self, sample: np.ndarray, *, warmup: int = 3, min_runs: int = 10, max_runs: int = 200, budget_s: float = 1.0
    ) -> Latency:
        """Times `invoke()` on one image: warm-up, then runs until max_runs or the time budget.

        At least `min_runs` runs are timed whatever the budget, so slow variants get a
        median over a real sample too.
        """
        self._resize(1)
        self._set_input(sample[:1])
        for _ in range(warmup):
            self._invoke()
        times: list[float] = []
        start = time.perf_counter()
        while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() - start < budget_s):
            t0 = time.perf_counter()
            self._interpreter.invoke()
            times.append((time.perf_counter() - t0) * 1000.0)
        return Latency.of(times, warmup=warmup, threads=self.num_threads)

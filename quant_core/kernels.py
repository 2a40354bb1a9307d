"""Each variant on the kernels its target runs: LiteRT's builtin kernels without XNNPACK, and TFLite Micro.

Every comparison measures a variant on this machine's XNNPACK. Integer-only targets (NPUs, DSPs,
microcontrollers) run neither XNNPACK nor x86 code, and their kernels round differently, so
`check_kernels` runs the same images again:

- on LiteRT's builtin kernels with no default delegate (`BUILTIN_WITHOUT_DEFAULT_DELEGATES`,
  `micro.run_reference`): the variant's agreement with float32 there, and the largest output
  difference from XNNPACK's (in output steps when the output is quantized);
- for an integer-only variant, in TensorFlow Lite Micro (`micro.run_micro`): the ops it lacks,
  the tensor arena it needs (measured), flash, and its agreement with float32 there.

The verdict's integer-only pick reads these numbers, not XNNPACK's (`KernelCheck.integer_agreement`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from quant_core import micro
from quant_core.errors import InputError
from quant_core.inputs.tflite_info import custom_ops
from quant_core.tasks import POSTPROCESS_OP, clear_past_count, postprocess_order

Agreement = Callable[[Sequence[np.ndarray]], float | None]  # raw outputs -> the task's agreement with float32


@dataclass(frozen=True)
class MicroFigures:
    """A variant in TensorFlow Lite Micro: what a microcontroller needs for it and how close it stays there."""

    flash_bytes: int
    arena_bytes: int | None  # None when it did not run
    missing_ops: tuple[str, ...] = ()
    error: str = ""  # one line; "" when every image ran
    agreement: float | None = None  # the task's agreement with float32 on TFLM's kernels
    max_diff: float | None = None  # largest |TFLM - XNNPACK| over every output value
    max_steps: float | None = None  # the same in output quantization steps (quantized outputs only)
    interpreter: str = ""  # "tflite-micro <version>"

    @property
    def ran(self) -> bool:
        return not self.error

    def fits(self, budget: micro.Budget) -> tuple[bool, str]:
        """Whether the arena fits the budget's RAM and the model its flash, in one sentence."""
        run = micro.MicroRun(self.flash_bytes, self.arena_bytes, self.missing_ops, self.error)
        return micro.fits(run, budget)


@dataclass(frozen=True)
class KernelCheck:
    """One variant's outputs on other kernels than XNNPACK's, against XNNPACK's and float32's."""

    reference_agreement: float | None  # the task's agreement with float32 on the builtin kernels without XNNPACK
    reference_max_diff: float  # largest |builtin - XNNPACK| over every output value (0.0: identical)
    reference_max_steps: float | None = None  # the same in output quantization steps (quantized outputs only)
    micro: MicroFigures | None = None  # integer-only variants only
    error: str = ""  # why the builtin kernels could not run it (one line); "" when they did

    @property
    def integer_agreement(self) -> float | None:
        """The agreement an integer-only target would see: TFLM's when it ran, else the builtin kernels'."""
        if self.micro is not None and self.micro.ran and self.micro.agreement is not None:
            return self.micro.agreement
        return self.reference_agreement


def check_kernels(model: bytes, x: np.ndarray, xnnpack: Sequence[np.ndarray], *, integer_only: bool,
                  agreement: Agreement, steps: Sequence[float] = ()) -> KernelCheck:
    """Runs `x` through the variant on the builtin kernels (and TFLM when `integer_only`) and measures both.

    Args:
        model: the variant's .tflite.
        x: the model input the variant was measured on (float32, preprocessed).
        xnnpack: the variant's outputs on XNNPACK for `x`, in output order.
        integer_only: whether every op is integer (then TFLite Micro runs it too).
        agreement: the task's agreement with float32 from raw outputs (as the comparison measures it).
        steps: each output's quantization step (0.0 for a float output), to state differences in steps.
    """
    try:
        reference = _cleared(model, micro.run_reference(model, x))
    except InputError as err:
        return KernelCheck(None, math.nan, error=str(err))
    return KernelCheck(agreement(reference), micro.max_difference(reference, xnnpack),
                       _max_steps(reference, xnnpack, steps),
                       _in_micro(model, x, xnnpack, agreement, steps) if integer_only else None)


def _in_micro(model: bytes, x: np.ndarray, xnnpack: Sequence[np.ndarray], agreement: Agreement,
              steps: Sequence[float]) -> MicroFigures:
    """The variant in TFLite Micro: what it needs there and, when it ran, how close it stays."""
    run = micro.run_micro(model, x)
    if not run.ran:
        return MicroFigures(run.flash_bytes, run.arena_bytes, run.missing_ops, run.error, interpreter=run.interpreter)
    got = _cleared(model, run.outputs)
    return MicroFigures(run.flash_bytes, run.arena_bytes, run.missing_ops, run.error, agreement(got),
                        micro.max_difference(got, xnnpack), _max_steps(got, xnnpack, run.output_scales or steps),
                        run.interpreter)


def _cleared(model: bytes, outputs: Sequence[np.ndarray]) -> tuple[np.ndarray, ...]:
    """The outputs with a TFLite_Detection_PostProcess model's rows past each image's count zeroed, as the LiteRT
    runner gives them (`tasks.clear_past_count`): the op leaves those rows unwritten."""
    order = postprocess_order([(1, *np.shape(o)[1:]) for o in outputs])
    if order is None or POSTPROCESS_OP not in custom_ops(model):
        return tuple(outputs)
    found = [np.array(o, copy=True) for o in outputs]
    for i in range(len(found[0])):
        one = [o[i:i + 1] for o in found]  # views: cleared in place
        clear_past_count(one, order)
    return tuple(found)


def _max_steps(a: Sequence[np.ndarray], b: Sequence[np.ndarray], steps: Sequence[float]) -> float | None:
    """The largest difference in quantization steps over the quantized outputs; None when none is quantized."""
    found = [float(np.max(np.abs(np.asarray(p, np.float64) - np.asarray(q, np.float64)))) / step
             for p, q, step in zip(a, b, steps) if step and np.size(p)]
    return round(max(found), 2) if found else None

"""Quantization modes and backends: the single source of truth for names and help text.

The CLI, the JSON report and the web app all use the `Mode` values as identifiers and
`MODE_INFO[mode].help` as the one-line explanation of a mode shown where one is chosen. Text
about a variant once built comes from what was measured on it (`quant_core.results.report.variant_title`
and `variant_description`), never from its mode's help: a variant with layers kept in float is
not what its mode promises.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from quant_core.errors import InputError, parse_choice


class Mode(enum.StrEnum):
    """A post-training quantization variant."""

    FLOAT32 = "float32"
    WEIGHT_ONLY = "weight_only"
    DYNAMIC_RANGE = "dynamic_range"
    FLOAT16 = "float16"
    INT8 = "int8"
    INT8_FLOAT_IO = "int8_float_io"
    INT16X8 = "int16x8"


class Backend(enum.StrEnum):
    """The converter backend that produces a variant: the TF converter or the LiteRT Quantizer."""

    TF_CONVERTER = "tf_converter"
    LITERT_QUANTIZER = "litert_quantizer"


class IOType(enum.StrEnum):
    """The dtype of a model's input and output tensors."""

    FLOAT32 = "float32"
    INT8 = "int8"
    UINT8 = "uint8"
    INT16 = "int16"


@dataclass(frozen=True)
class ModeInfo:
    """What a mode is, when to use it and which backends can build it."""

    title: str
    help: str  # one line, shown next to the toggle in the UI and in `--help`
    needs_calibration: bool
    # Backends able to build the mode, preferred first. The LiteRT Quantizer is preferred
    # where it can build a mode: it works on the float .tflite in well under a second and a
    # few hundred MB, where the converter re-converts the whole graph (seconds, ~1 GB).
    # The second tuple lists the backends that work from a float .tflite alone.
    backends: tuple[Backend, ...]
    tflite_backends: tuple[Backend, ...]
    io_types: tuple[IOType, ...]  # allowed I/O types, default first


_TF, _LQ = Backend.TF_CONVERTER, Backend.LITERT_QUANTIZER
_F, _I8, _U8, _I16 = IOType.FLOAT32, IOType.INT8, IOType.UINT8, IOType.INT16

MODE_INFO: dict[Mode, ModeInfo] = {
    # Help text holds for any model: trade-offs and when to use a mode, never a figure measured on one model
    # (sizes, speeds and accuracy are measured on the user's model and shown on Compare).
    Mode.FLOAT32: ModeInfo(
        "Float32 baseline",
        "The unquantized model converted to .tflite: the reference every variant is "
        "compared against.",
        False, (_TF,), (_TF,), (_F,),
    ),
    Mode.WEIGHT_ONLY: ModeInfo(
        "Weight-only int8",
        "Int8 weights (one byte each instead of four), turned back into float when the model loads; all "
        "compute stays float. Usually the smallest accuracy loss of the int8 modes and no calibration "
        "images, but no speed-up and float weights in memory while running: use when download size matters most.",
        False, (_LQ,), (_LQ,), (_F,),
    ),
    Mode.DYNAMIC_RANGE: ModeInfo(
        "Dynamic range",
        "Int8 weights (one byte each instead of four); activations quantized on the fly by hybrid kernels, "
        "so no calibration images are needed. Speed depends heavily on the runtime and CPU (hybrid kernels "
        "can be slower than float32); float activations, so not for integer-only accelerators.",
        False, (_LQ, _TF), (_LQ,), (_F,),
    ),
    Mode.FLOAT16: ModeInfo(
        "Float16 weights",
        "Float16 weights (two bytes each instead of four), float compute (or native float16 on GPUs). "
        "Accuracy loss is usually negligible: a safe first step, and the usual choice for GPU delegates.",
        False, (_LQ, _TF), (_LQ,), (_F,),
    ),
    Mode.INT8: ModeInfo(
        "Full integer int8",
        "Int8 weights and activations, int8 input and output, every op integer (checked on the built model): "
        "what integer-only NPUs, DSPs and the Edge TPU run, and usually the fastest on CPUs. Needs "
        "representative calibration images; the accuracy it costs depends on the model.",
        True, (_TF, _LQ), (_TF, _LQ), (_I8, _U8),
    ),
    Mode.INT8_FLOAT_IO: ModeInfo(
        "Int8 with float I/O",
        "Int8 weights and activations inside, float input and output with "
        "quantize/dequantize at the edges: int8 speed on CPUs without changing your "
        "pre- and post-processing code; not integer-only. Needs calibration images.",
        True, (_TF,), (_TF,), (_F,),
    ),
    Mode.INT16X8: ModeInfo(
        "16x8 (int16 activations)",
        "Int8 weights, int16 activations: more accurate than int8 when activations have "
        "a wide range, but runs on slow reference kernels on most CPUs today and few accelerators "
        "support it. Needs calibration images.",
        True, (_TF, _LQ), (_TF, _LQ), (_F, _I16),
    ),
}


def parse_mode(name: str) -> Mode:
    """Returns the Mode named `name`; raises InputError listing valid names otherwise."""
    return parse_choice(Mode, name, "mode")


def parse_modes(text: str) -> tuple[Mode, ...]:
    """Parses a comma-separated list of modes, keeping order and dropping repeats."""
    names = [part for part in text.split(",") if part.strip()]
    if not names:
        raise InputError("no modes given; expected a comma-separated list such as float32,int8")
    return tuple(dict.fromkeys(parse_mode(n) for n in names))

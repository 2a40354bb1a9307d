"""Recipes: the complete, typed description of how one variant is built.

A recipe validates itself on construction and round-trips to JSON, so what is written
beside each .tflite is exactly what produced it.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from quant_core._serde import json_kind
from quant_core.errors import InputError, parse_choice
from quant_core.modes import MODE_INFO, Backend, IOType, Mode

# The I/O types each backend can give a mode; the converter can do everything the
# mode allows, the LiteRT Quantizer's static recipes always quantize the interface.
_LITERT_IO: dict[Mode, tuple[IOType, ...]] = {
    Mode.INT8: (IOType.INT8,),
    Mode.INT16X8: (IOType.INT16,),
}


class CalibrationSource(enum.StrEnum):
    """Where calibration samples come from."""

    IMAGES = "images"  # the user's own images, preprocessed as for evaluation
    RANDOM = "random"  # uniform noise in the input range: a what-if that misleads


@dataclass(frozen=True)
class Recipe:
    """How to build one variant.

    Attributes:
        mode: the quantization mode.
        backend: the converter backend; None picks the mode's preferred backend for the source.
        calibration_count: images used to calibrate activation ranges (calibrated
            modes only); more images give more robust ranges at a higher build cost.
        calibration_source: the user's images, or random data as an explicit what-if.
        per_channel: one scale per output channel for conv/dense weights (more
            accurate) instead of one per tensor (needed by some older accelerators).
        io_type: dtype of the model interface; None is the mode's default.
        float_layers: output tensor names of ops kept in float while the rest is quantized
            (calibrated modes only; the names `quant_core.layers` reports). The model is then
            no longer integer-only.
    """

    mode: Mode
    backend: Backend | None = None
    calibration_count: int = 100
    calibration_source: CalibrationSource = CalibrationSource.IMAGES
    per_channel: bool = True
    io_type: IOType | None = None
    float_layers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _coerce(self, "mode", Mode)
        _coerce(self, "backend", Backend)
        _coerce(self, "calibration_source", CalibrationSource)
        _coerce(self, "io_type", IOType)
        info = MODE_INFO[self.mode]
        _check_float_layers(self, info.needs_calibration)
        if not isinstance(self.calibration_count, int) or not 1 <= self.calibration_count <= 10_000:
            raise InputError(
                f"calibration count must be an integer from 1 to 10000, got {self.calibration_count!r}"
            )
        if self.backend is not None and self.backend not in info.backends:
            raise InputError(
                f"{self.mode} cannot be built by {self.backend}; "
                f"expected one of: {', '.join(info.backends)}"
            )
        if self.io_type is not None:
            allowed = info.io_types
            if self.backend is Backend.LITERT_QUANTIZER and self.mode in _LITERT_IO:
                allowed = _LITERT_IO[self.mode]
            if self.io_type not in allowed:
                raise InputError(
                    f"{self.mode} with {self.backend or 'the default backend'} supports I/O "
                    f"types {', '.join(allowed)}, got {self.io_type}"
                )

    @property
    def needs_calibration(self) -> bool:
        """Whether building this variant needs calibration samples."""
        return MODE_INFO[self.mode].needs_calibration

    def resolve(self, *, source_is_tflite: bool) -> Recipe:
        """Returns the recipe with backend and I/O type made explicit for a source.

        With no backend, the mode's preferred backend that can build these options (per-tensor
        or float-layer 16x8: the LiteRT Quantizer); a chosen backend is kept, and refuses what
        it cannot build with the way out.

        Calibration settings of a mode that does not calibrate, and per-channel for a mode
        that keeps float weights, are reset to their defaults: they change nothing, so they
        must not make a built variant look different (its cache key, a warm worker's memory
        of what it measured).

        Raises:
            InputError: if the chosen backend cannot start from a float .tflite.
        """
        info = MODE_INFO[self.mode]
        choices = info.tflite_backends if source_is_tflite else info.backends
        backend = self.backend or next((b for b in choices if _can_build(self, b)), choices[0])
        if backend not in choices:
            raise InputError(
                f"{self.mode} from a .tflite file needs {', '.join(choices)}; "
                f"{backend} needs the original Keras or SavedModel model"
            )
        io_type = self.io_type
        if io_type is None:
            allowed = _LITERT_IO.get(self.mode) if backend is Backend.LITERT_QUANTIZER else None
            io_type = (allowed or info.io_types)[0]
        resolved = replace(self, backend=backend, io_type=io_type)
        if not self.needs_calibration:
            resolved = replace(resolved, calibration_count=Recipe.calibration_count,
                               calibration_source=Recipe.calibration_source)
        if self.mode in (Mode.FLOAT32, Mode.FLOAT16):  # no integer weights: nothing per channel
            resolved = replace(resolved, per_channel=Recipe.per_channel)
        return resolved

    def what_ifs(self) -> tuple[str, ...]:
        """The settings of this recipe changed from the defaults that can cost fidelity, in words.

        A warning or a banner names these, so a collapse is blamed on the setting that
        caused it (per-tensor weights do not touch calibration, random calibration does not
        touch dynamic range).
        """
        changed = []
        if not self.per_channel and self.mode not in (Mode.FLOAT32, Mode.FLOAT16):
            changed.append("per-tensor weights")
        if self.needs_calibration and self.calibration_source is CalibrationSource.RANDOM:
            changed.append("random calibration data")
        if self.needs_calibration and self.calibration_count < Recipe.calibration_count:
            changed.append(f"at most {self.calibration_count} calibration images")
        if self.float_layers:
            changed.append(f"{len(self.float_layers)} layer{'s' if len(self.float_layers) > 1 else ''} kept in float")
        return tuple(changed)

    @property
    def backend_used(self) -> Backend:
        """The backend of a resolved recipe (see `resolve`): the one that builds it."""
        if self.backend is None:
            raise ValueError(f"the {self.mode} recipe is not resolved: call resolve() first")
        return self.backend

    @property
    def io(self) -> IOType:
        """The interface dtype of a resolved recipe (see `resolve`)."""
        if self.io_type is None:
            raise ValueError(f"the {self.mode} recipe is not resolved: call resolve() first")
        return self.io_type

    @property
    def name(self) -> str:
        """The variant's name: its mode, with how many layers stay in float ('int8+3float')."""
        return f"{self.mode.value}+{len(self.float_layers)}float" if self.float_layers else self.mode.value

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (enums as their string values, tuples as lists); float_layers only when set.

        Leaving the empty default out keeps every earlier recipe's dict, and so its cache key, unchanged.
        """
        data = {k: (v.value if isinstance(v, enum.Enum) else list(v) if isinstance(v, tuple) else v)
                for k, v in asdict(self).items()}
        if not self.float_layers:
            del data["float_layers"]
        return data

    @classmethod
    def from_dict(cls, data: Any) -> Recipe:
        """Inverse of `to_dict`, for JSON from anywhere: unknown keys and wrong JSON types are an InputError."""
        if not isinstance(data, dict):
            raise InputError(f'expected a recipe object {{"mode": "int8", ...}}, got {json_kind(data)}')
        unknown = {str(k) for k in data} - set(cls.__dataclass_fields__)
        if unknown:
            raise InputError(f"unknown recipe fields: {', '.join(sorted(unknown))}")
        for key, value in data.items():
            _check_json_field(key, value)
        if "mode" not in data:
            raise InputError('a recipe needs a mode; expected {"mode": "int8", ...}')
        return cls(**data)


def compile_recipes(modes: Sequence[Mode], *, backend: Backend | None = None, calibration_count: int = 100,
                    calibration_source: CalibrationSource = CalibrationSource.IMAGES, per_channel: bool = True,
                    int8_io: IOType | None = None) -> tuple[Recipe, ...]:
    """One recipe per mode from options chosen once for all modes (the CLI's flags, the Quantize page).

    The backend preference applies to the modes that backend can build; the others keep
    their default backend. `int8_io` applies to the int8 mode only.

    Raises:
        InputError: an option the chosen backend cannot honour (e.g. uint8 I/O from the
            LiteRT Quantizer), never silently dropped.
    """
    return tuple(
        Recipe(mode, backend=backend if backend in MODE_INFO[mode].backends else None,
               calibration_count=calibration_count, calibration_source=calibration_source, per_channel=per_channel,
               io_type=int8_io if mode is Mode.INT8 else None)
        for mode in modes
    )


MAX_FLOAT_LAYERS = 500


def _can_build(recipe: Recipe, backend: Backend) -> bool:
    """Whether the backend builds the recipe's options as well as its mode (`quant_core.builders` refuses the rest)."""
    if backend is Backend.TF_CONVERTER and recipe.mode is Mode.INT16X8:  # its 16x8 step skips no op, per channel only
        return recipe.per_channel and not recipe.float_layers
    if backend is Backend.LITERT_QUANTIZER and recipe.io_type is not None and recipe.mode in _LITERT_IO:
        return recipe.io_type in _LITERT_IO[recipe.mode]
    return True


def _check_float_layers(recipe: Recipe, calibrated: bool) -> None:
    """Normalizes float_layers to a sorted tuple of unique names (one cache key per set), or raises InputError."""
    names = recipe.float_layers
    if isinstance(names, str) or not all(isinstance(n, str) and n.strip() for n in names):
        raise InputError("float_layers must be a list of tensor names (as the per-layer error reports them)")
    if names and not calibrated:
        raise InputError(f"{recipe.mode} quantizes no activations: keeping layers in float applies to int8, "
                         "int8_float_io and int16x8")
    if len(set(names)) > MAX_FLOAT_LAYERS:
        raise InputError(f"at most {MAX_FLOAT_LAYERS} layers can be kept in float, got {len(set(names))}")
    object.__setattr__(recipe, "float_layers", tuple(sorted(set(names))))


# Each field's JSON type as `to_dict` writes it, in words (bool is no integer here, nor null a mode).
_JSON_FIELDS: dict[str, tuple[tuple[type, ...], str]] = {
    "mode": ((str,), "a mode name"), "backend": ((str, type(None)), "a backend name or null"),
    "calibration_count": ((int,), "an integer"), "calibration_source": ((str,), "a source name"),
    "per_channel": ((bool,), "true or false"), "io_type": ((str, type(None)), "a dtype name or null"),
    "float_layers": ((list, tuple), "a list of tensor names"),
}


def _check_json_field(key: str, value: Any) -> None:
    """Refuses a recipe field of the wrong JSON type (per_channel "no" would otherwise read as true)."""
    types, words = _JSON_FIELDS[key]
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        raise InputError(f"recipe field {key} must be {words}, got {json_kind(value)}")


def _coerce(obj: Recipe, name: str, enum_type: type[enum.Enum]) -> None:
    """Converts a string field to its enum (strictly), in place on a frozen dataclass."""
    value = getattr(obj, name)
    if value is not None:
        object.__setattr__(obj, name, parse_choice(enum_type, value, name))

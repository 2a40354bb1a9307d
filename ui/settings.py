"""The quantization choices of the Quantize page, and their round-trip through a share link."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace

from quant_core import Backend, CalibrationSource, IOType, Mode, Recipe
from quant_core.errors import InputError, parse_choice
from quant_core.modes import parse_modes
from quant_core.recipe import compile_recipes


@dataclass(frozen=True)
class Settings:
    """What to build. Each field maps to one control on the Quantize page."""

    modes: tuple[Mode, ...] = tuple(Mode)
    calibration_count: int = 100
    calibration_source: CalibrationSource = CalibrationSource.IMAGES
    per_channel: bool = True
    int8_io: IOType = IOType.INT8
    backend: Backend | None = None  # None: each mode's preferred engine
    threads: int = 1
    # Extra variants from the Layers page: a calibrated mode with these layers (output tensor names) in float.
    float_layers: tuple[tuple[Mode, tuple[str, ...]], ...] = ()

    def recipes(self) -> tuple[Recipe, ...]:
        """One recipe per selected mode, then the float-layer variants (quant_core's compiler; raises InputError)."""
        def compile_for(modes: tuple[Mode, ...]) -> tuple[Recipe, ...]:
            return compile_recipes(modes, backend=self.backend, calibration_count=self.calibration_count,
                                   calibration_source=self.calibration_source, per_channel=self.per_channel,
                                   int8_io=self.int8_io)
        extras = tuple(replace(compile_for((mode,))[0], float_layers=names) for mode, names in self.float_layers)
        return compile_for(self.modes) + extras

    def with_float_layers(self, mode: Mode, names: tuple[str, ...]) -> Settings:
        """These settings plus one variant of `mode` with `names` kept in float (the same set is not added twice)."""
        entry = (mode, tuple(sorted(set(names))))
        return self if entry in self.float_layers else replace(self, float_layers=(*self.float_layers, entry))

    def to_query(self) -> dict[str, str]:
        """Query parameters for the settings that differ from the defaults."""
        default = Settings().to_all()
        return {k: v for k, v in self.to_all().items() if v != default[k]}

    def to_all(self) -> dict[str, str]:
        """All settings as query parameters."""
        return {
            "modes": ",".join(m.value for m in self.modes), "cal": str(self.calibration_count),
            "cal_src": self.calibration_source.value, "per_channel": "1" if self.per_channel else "0",
            "io": self.int8_io.value, "backend": self.backend.value if self.backend else "auto",
            "threads": str(self.threads),
            "keep": json.dumps([[m.value, list(n)] for m, n in self.float_layers], separators=(",", ":"))
            if self.float_layers else "",
        }

    @classmethod
    def from_query(cls, params: Mapping[str, str]) -> Settings:
        """Settings from query parameters; unknown or invalid values raise InputError."""
        s = cls()
        try:
            if "modes" in params:
                s = replace(s, modes=parse_modes(params["modes"]))
            if "cal" in params:
                s = replace(s, calibration_count=int(params["cal"]))
            if "cal_src" in params:
                source = parse_choice(CalibrationSource, params["cal_src"], "calibration source")
                s = replace(s, calibration_source=source)
            if "per_channel" in params:
                s = replace(s, per_channel=params["per_channel"] != "0")
            if "io" in params:
                s = replace(s, int8_io=parse_choice(IOType, params["io"], "io type"))
            if "backend" in params:
                s = replace(s, backend=None if params["backend"] == "auto" else parse_choice(Backend, params["backend"],
                                                                                          "backend"))
            if "threads" in params:
                s = replace(s, threads=int(params["threads"]))
            if params.get("keep"):
                s = replace(s, float_layers=_float_layers(params["keep"]))
        except (ValueError, TypeError) as err:
            raise InputError(f"the link's settings are not valid ({err})") from None
        s.recipes()  # validates
        return s


def _float_layers(text: str) -> tuple[tuple[Mode, tuple[str, ...]], ...]:
    """The `keep` parameter: JSON [[mode, [tensor name, ...]], ...] (raises ValueError or TypeError)."""
    entries = json.loads(text)
    if not isinstance(entries, list) or not all(isinstance(e, list) and len(e) == 2 and isinstance(e[1], list)
                                                for e in entries):
        raise ValueError("keep must be a list of [mode, [layer, ...]]")
    return tuple((parse_choice(Mode, mode, "mode"), tuple(str(n) for n in names)) for mode, names in entries)

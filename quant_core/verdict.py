"""Which variant to ship, per deployment target, from measured numbers and a fidelity floor.

A variant can be picked only when it was built, carries no warning and meets the floor
the user set (top-1 agreement with float32, or an accuracy drop). Among those, each
target has one rule, written in `Target`'s descriptions so that the app, the HTML report
and the CLI explain the choice the same way.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from quant_core.errors import InputError
from quant_core.modes import Mode
from quant_core.results import CompareResult, VariantResult

_SAME_SPEED = 1.25  # latencies within this factor of the fastest count as equally fast (timing noise, x86 vs ARM)


class Target(enum.StrEnum):
    """Where the model will run."""

    CPU = "cpu"
    GPU = "gpu"
    INTEGER = "integer"

    @property
    def heading(self) -> str:
        """The target as a card heading."""
        return _TITLES[self]

    @property
    def rule(self) -> str:
        """How the pick is made, in one sentence."""
        return _RULES[self]


_TITLES = {Target.CPU: "Phone or desktop CPU", Target.GPU: "Mobile GPU",
           Target.INTEGER: "Integer-only NPU, DSP or microcontroller"}
_RULES = {
    Target.CPU: "among the variants that meet the floor and are about as fast as the fastest of them (within "
                f"{_SAME_SPEED:.2f}x, measured here), the smallest footprint: file plus runtime memory",
    Target.GPU: "GPU delegates compute in float: float16 (half the file) when it meets the floor, else float32",
    Target.INTEGER: "only integer-only variants run there; among those that meet the floor, the least runtime "
                    "memory (RAM), then the smallest file (flash)",
}
_GPU_MODES = (Mode.FLOAT16, Mode.FLOAT32)


class FloorKind(enum.StrEnum):
    """What the fidelity floor is measured on."""

    AGREEMENT = "agreement"  # top-1 agreement with float32 at least `value`
    ACCURACY_DROP = "accuracy_drop"  # accuracy at most `value` below float32's (needs labels)


@dataclass(frozen=True)
class Floor:
    """How close to float32 a variant must stay to be shipped.

    Default: the same top-1 class as float32 on at least 99 % of the images.
    """

    kind: FloorKind = FloorKind.AGREEMENT
    value: float = 0.99

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", FloorKind(self.kind))
        if not 0.0 <= self.value <= 1.0:
            raise InputError(f"expected a fidelity floor between 0 and 1, got {self.value}")

    @property
    def label(self) -> str:
        """The floor in words, e.g. 'agreement ≥ 99%'."""
        if self.kind is FloorKind.AGREEMENT:
            return f"agreement with float32 ≥ {self.value:.1%}".replace(".0%", "%")
        return f"accuracy drop ≤ {self.value * 100:.1f} points".replace(".0 points", " points")

    def applies(self, result: CompareResult) -> bool:
        """False when the floor needs labels the result does not have."""
        return self.kind is FloorKind.AGREEMENT or result.labelled

    def met(self, variant: VariantResult, baseline: VariantResult | None) -> bool:
        """True when the variant stays within the floor (float32 always does)."""
        if variant is baseline:
            return True
        if self.kind is FloorKind.AGREEMENT or baseline is None or baseline.accuracy is None:
            return variant.top1_agreement is not None and variant.top1_agreement >= self.value - 1e-9
        return variant.accuracy is not None and baseline.accuracy - variant.accuracy <= self.value + 1e-9

    def shortfall(self, variant: VariantResult, baseline: VariantResult | None) -> str:
        """How the variant stands against the floor, e.g. '95.5% agreement'."""
        if self.kind is FloorKind.AGREEMENT or baseline is None or baseline.accuracy is None:
            return f"{variant.top1_agreement or 0:.1%} agreement with float32"
        drop = (baseline.accuracy - (variant.accuracy or 0.0)) * 100
        return f"accuracy {drop:.1f} points below float32"


@dataclass(frozen=True)
class Pick:
    """The variant to ship for one target, or None with the reason none fits."""

    target: Target
    variant: str | None
    reason: str  # one sentence, from measured numbers


@dataclass(frozen=True)
class Verdict:
    """One pick per target, with the floor they were made with."""

    floor: Floor
    picks: tuple[Pick, ...]
    note: str  # how coarse the floor is on this many images ('' when fine)

    def pick(self, target: Target) -> Pick:
        """The pick for one target."""
        return next(p for p in self.picks if p.target is target)


def decide(result: CompareResult, *, floor: Floor | None = None) -> Verdict:
    """The variant to ship per target.

    Args:
        result: a comparison (the float32 baseline should be in it).
        floor: the fidelity floor; an accuracy-drop floor on unlabelled images falls back
            to the default agreement floor (and says so in `note`).
    """
    floor = floor or Floor()
    note = ""
    if not floor.applies(result):
        note = f"No labels: {floor.label} cannot be checked, so agreement with float32 ≥ 99% is used. "
        floor = Floor()
    base = result.baseline
    usable = [v for v in result.variants if v.ok and not v.warning]
    fits = [v for v in usable if floor.met(v, base)]
    picks = (_cpu(fits, result), _gpu(fits, result, floor), _integer(fits, result, floor))
    return Verdict(floor=floor, picks=picks, note=note + _coarseness(result, floor))


def _coarseness(result: CompareResult, floor: Floor) -> str:
    """A sentence when one image moves agreement by more than the floor allows."""
    n = result.fidelity_images
    if floor.kind is not FloorKind.AGREEMENT or not n or 1 / n <= 1 - floor.value:
        return ""
    return (f"With {n} images one disagreeing image is {100 / n:.1f} points, so {floor.label} allows none; "
            "add images for a finer verdict.")


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _mb(size: int | None) -> str:
    """Bytes as the tables show them (1 KB = 1024 bytes)."""
    return "–" if size is None else f"{size / 2**20:.1f} MB" if size >= 2**20 else f"{size / 2**10:.0f} KB"


def _fidelity(v: VariantResult, result: CompareResult) -> str:
    base = result.baseline
    if v is base:
        return "it is the reference"
    n = result.fidelity_images
    same = round((v.top1_agreement or 0.0) * n)
    text = f"same top-1 class as float32 on {same} of {n} images"
    if v.accuracy is not None and base is not None and base.accuracy is not None:
        text += (f", same accuracy ({v.accuracy:.1%})" if abs(v.accuracy - base.accuracy) < 1e-9
                 else f", accuracy {v.accuracy:.1%} vs {base.accuracy:.1%}")
    return text


def _footprint(v: VariantResult) -> int:
    """What a device holds while the variant runs: the file plus the interpreter's measured heap."""
    return (v.size_bytes or 0) + (v.memory.runtime_bytes if v.memory else 0)


def _ram(v: VariantResult) -> str:
    return "" if v.memory is None else f"{_mb(v.memory.runtime_bytes)} of RAM, "


def _smaller(v: VariantResult) -> str:
    return "" if not v.size_ratio or v.size_ratio >= 0.999 else f"{1 / v.size_ratio:.1f}x smaller than float32, "


def _speed(v: VariantResult, base: VariantResult | None) -> str:
    if v.latency is None:
        return ""
    text = f"{v.latency.median_ms:.3g} ms per image here"
    if base is not None and base.latency is not None and v is not base and v.latency.median_ms > 0:
        ratio = base.latency.median_ms / v.latency.median_ms
        text += (" (as fast as float32)" if abs(ratio - 1) <= 0.1 else f" ({ratio:.1f}x faster than float32)"
                 if ratio > 1 else f" ({1 / ratio:.2f}x slower than float32)")
    return text + ", "


def _none_fits(target: Target, candidates: list[VariantResult], result: CompareResult, floor: Floor,
               why: str) -> Pick:
    """The pick when nothing fits: the closest candidate and what would help."""
    base = result.baseline
    built = [v for v in candidates if v.ok]
    if not built:
        return Pick(target, None, f"No variant for this target was built ({why}).")
    closest = max(built, key=lambda v: (v.top1_agreement or 0.0, v.accuracy or 0.0))
    changed = closest.recipe.what_ifs()
    advice = (f"Undo {' and '.join(changed)}, or lower the floor." if changed else
              "Try more or more representative calibration images, or lower the floor." if
              closest.recipe.needs_calibration else "Lower the floor, or try another mode.")
    return Pick(target, None, f"No variant meets {floor.label}: the closest, {closest.name}, has "
                f"{floor.shortfall(closest, base)}{' and a warning' if closest.warning else ''}. {advice}")


def _cpu(fits: list[VariantResult], result: CompareResult) -> Pick:
    base = result.baseline
    if not fits:
        return Pick(Target.CPU, None, "float32 was not measured: there is no reference to compare with.")
    timed = [v.latency.median_ms for v in fits if v.latency is not None]
    fastest = min(timed) if timed else None
    quick = [v for v in fits if fastest is None or v.latency is None or v.latency.median_ms <= fastest * _SAME_SPEED]
    best = min(quick, key=lambda v: (_footprint(v), v.latency.median_ms if v.latency else 0.0))
    if best is base:
        why = "no variant with a smaller footprint meets the floor and is as fast" if len(fits) > 1 else \
            "no quantized variant meets the floor"
        return Pick(Target.CPU, best.name, _sentence(f"{why}; {_mb(best.size_bytes)} file, {_ram(best)}"
                                                     f"{_speed(best, base)}".rstrip(", ") + "."))
    return Pick(Target.CPU, best.name, _sentence(f"{_smaller(best)}{_ram(best)}{_speed(best, base)}"
                                                 f"{_fidelity(best, result)}."))


def _gpu(fits: list[VariantResult], result: CompareResult, floor: Floor) -> Pick:
    base = result.baseline
    for mode in _GPU_MODES:
        v = next((v for v in fits if v.mode is mode), None)
        if v is not None:
            extra = "" if v is base else f"{_smaller(v)}{_fidelity(v, result)}; "
            return Pick(Target.GPU, v.name, _sentence(f"{extra}GPUs compute in float, integer variants gain "
                                                      "nothing there (not timed: no GPU on this machine)."))
    return _none_fits(Target.GPU, [v for v in result.variants if v.mode in _GPU_MODES], result, floor,
                      "float16 and float32 were not requested")


def _integer(fits: list[VariantResult], result: CompareResult, floor: Floor) -> Pick:
    integer = [v for v in fits if v.ops is not None and v.ops.integer_only]
    if not integer:
        candidates = [v for v in result.variants if v.ok and v.ops is not None and v.ops.integer_only]
        return _none_fits(Target.INTEGER, candidates, result, floor,
                          "request int8 (int8 input and output) for an integer-only model")
    best = min(integer, key=lambda v: (v.memory.runtime_bytes if v.memory else 0, v.size_bytes or 0))
    ram = f"needs {_mb(best.memory.runtime_bytes)} of RAM (measured) and " if best.memory else "needs "
    return Pick(Target.INTEGER, best.name, f"Every op is integer; {ram}{_mb(best.size_bytes)} of flash; "
                f"{_fidelity(best, result)}.")

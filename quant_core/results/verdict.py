"""Which variant to ship, per deployment target, from measured numbers and a fidelity floor.

A variant can be picked only when it was built, carries no warning and meets the floor
the user set (top-1 agreement with float32, or an accuracy drop). Among those, each
target has one rule, written in `Target`'s descriptions so that the app, the HTML report
and the CLI explain the choice the same way.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from quant_core.errors import InputError
from quant_core.modes import Mode
from quant_core.results.compare_result import CompareResult, VariantResult
from quant_core.runner import Latency

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
                f"{_SAME_SPEED:.2f}x, measured here; a variant whose middle half of runs overlaps that line counts "
                "as equally fast within the timing noise), the smallest footprint: file plus runtime memory",
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

    @property
    def plain(self) -> str:
        """The floor in everyday words, e.g. "the original's answer on at least 99% of the images"."""
        if self.kind is FloorKind.AGREEMENT:
            return f"the original's answer on at least {self.value:.1%} of the images".replace(".0%", "%")
        points = f"{self.value * 100:.1f}".removesuffix(".0")
        return f"at most {points} more wrong answer{'s' * (points != '1')} per 100 images than the original"

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
    reason: str  # one sentence, from measured numbers, in the workbench's terms
    plain: str = ""  # the same decision in everyday words, for a reader who never used the workbench


@dataclass(frozen=True)
class Verdict:
    """One pick per target, with the floor they were made with."""

    floor: Floor
    picks: tuple[Pick, ...]
    note: str  # how coarse the floor is on this many images ('' when fine)
    plain_note: str = ""  # the same in everyday words

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
    picks = (_cpu(fits, result, floor), _gpu(fits, result, floor), _integer(fits, result, floor))
    plain = "The bar set for this comparison could not be checked without labels, so " \
        f"{floor.plain} is required. " if note else ""
    return Verdict(floor=floor, picks=picks, note=note + _coarseness(result, floor),
                   plain_note=plain + _coarseness(result, floor, plain=True))


def _coarseness(result: CompareResult, floor: Floor, *, plain: bool = False) -> str:
    """A sentence when one image moves agreement by more than the floor allows."""
    n = result.fidelity_images
    if floor.kind is not FloorKind.AGREEMENT or not n or 1 / n <= 1 - floor.value:
        return ""
    if plain:
        return (f"With {n} images, one image with another answer is already {100 / n:.1f}% of them, so the bar "
                f"({floor.plain}) allows none; more images give a finer answer.")
    return (f"With {n} images one disagreeing image is {100 / n:.1f} points, so {floor.label} allows none; "
            "add images for a finer verdict.")


class Pace(enum.StrEnum):
    """How one variant's latency stands against a line drawn from another's, with both spreads."""

    WITHIN = "within"  # its whole middle half of runs is under the line
    TIE = "tie"  # the middle halves overlap the line: too close to call on this machine
    BEYOND = "beyond"  # its whole middle half of runs is over the line


def pace(slow: Latency, fast: Latency, *, factor: float = 1.0) -> Pace:
    """Whether `slow` is within `factor` times `fast`'s latency, beyond it, or a tie within the timing noise.

    Each latency is taken as the middle half of its runs (`Latency.spread_ms`), so a
    difference smaller than the runs' own spread is never called: the answer depends only
    on the stored runs, and a rerun whose medians move within that spread gives the same
    answer. Results without stored runs compare their medians, as before runs were kept.
    """
    low, high = slow.spread_ms
    fast_low, fast_high = fast.spread_ms
    if low > factor * fast_high:
        return Pace.BEYOND
    if high < factor * fast_low:
        return Pace.WITHIN
    return Pace.TIE


def contested(variants: Sequence[VariantResult]) -> tuple[str, ...]:
    """Names of the usable timed variants whose speed against another is a tie at the CPU rule's line.

    Timing these again (more runs, at another moment) can separate them; what is still a
    tie after that counts as equally fast.
    """
    timed = sorted((v for v in variants if v.ok and not v.warning and v.latency is not None),
                   key=lambda v: v.latency.median_ms if v.latency else 0.0)
    names: set[str] = set()
    for fast, slow in itertools.combinations(timed, 2):
        if fast.latency and slow.latency and pace(slow.latency, fast.latency, factor=_SAME_SPEED) is Pace.TIE:
            names |= {fast.name, slow.name}
    return tuple(v.name for v in timed if v.name in names)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _clauses(*parts: str, lead: str = "") -> str:
    """Non-empty clauses as one sentence (after `lead`, when given)."""
    return _sentence(lead + ", ".join(p for p in parts if p)) + "."


def _mb(size: int | None) -> str:
    """Bytes as the tables show them (1 KB = 1024 bytes)."""
    return "–" if size is None else f"{size / 2**20:.1f} MB" if size >= 2**20 else f"{size / 2**10:.0f} KB"


def _times(ratio: float) -> str:
    """A speed or size ratio: two decimals near 1, one beyond 2."""
    return f"{ratio:.2f}x" if ratio < 2 else f"{ratio:.1f}x"


def _ms(value: float) -> str:
    return f"{value:.3g}"


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


def _plain_fidelity(v: VariantResult, result: CompareResult) -> str:
    """How close to the original a variant stays, counted in images."""
    base = result.baseline
    n = result.fidelity_images
    if v is base:
        return ""
    text = f"same answer as the original on {round((v.top1_agreement or 0.0) * n)} of {n} images"
    if v.accuracy is not None and base is not None and base.accuracy is not None:
        right, base_right = round(v.accuracy * n), round(base.accuracy * n)
        text += (f", right as often as the original ({right} of {n})" if right == base_right
                 else f", right on {right} of {n} (the original: {base_right})")
    return text


def _footprint(v: VariantResult) -> int:
    """What a device holds while the variant runs: the file plus the interpreter's measured heap."""
    return (v.size_bytes or 0) + (v.memory.runtime_bytes if v.memory else 0)


def _ram(v: VariantResult) -> str:
    return "" if v.memory is None else f"{_mb(v.memory.runtime_bytes)} of RAM"


def _smaller(v: VariantResult, *, than: str = " than float32") -> str:
    return "" if not v.size_ratio or v.size_ratio >= 0.999 else f"{1 / v.size_ratio:.1f}x smaller{than}"


def _against(v: VariantResult, base: VariantResult | None, *, name: str) -> str:
    """The variant's speed against float32's, called only beyond both runs' spread."""
    if v.latency is None or base is None or base.latency is None or v is base or v.latency.median_ms <= 0:
        return ""
    ratio = base.latency.median_ms / v.latency.median_ms
    return {Pace.TIE: f"as fast as {name} within the timing noise",
            Pace.WITHIN: f"{_times(ratio)} faster than {name}",
            Pace.BEYOND: f"{_times(1 / ratio)} slower than {name}"}[pace(v.latency, base.latency)]


def _speed(v: VariantResult, base: VariantResult | None) -> str:
    if v.latency is None:
        return ""
    against = _against(v, base, name="float32")
    return f"{_ms(v.latency.median_ms)} ms per image here" + (f" ({against})" if against else "")


def _keeps_up(v: VariantResult, fastest: VariantResult | None) -> bool:
    """True unless the variant is slower than the CPU rule's line beyond both runs' spread."""
    if fastest is None or v.latency is None or fastest.latency is None:
        return True
    return pace(v.latency, fastest.latency, factor=_SAME_SPEED) is not Pace.BEYOND


def _noise(v: VariantResult, fastest: VariantResult | None) -> tuple[str, str]:
    """When the pick counts as fast only within the timing noise: what the card says, in terms and in plain words."""
    if fastest is None or v is fastest or v.latency is None or fastest.latency is None or \
            pace(v.latency, fastest.latency, factor=_SAME_SPEED) is not Pace.TIE:
        return "", ""
    (low, high), (fast_low, fast_high) = v.latency.spread_ms, fastest.latency.spread_ms
    return (f"as fast as {fastest.name}, the fastest, within the timing noise (middle half of the runs: "
            f"{_ms(low)}–{_ms(high)} ms against {_ms(fast_low)}–{_ms(fast_high)} ms, around the "
            f"{_SAME_SPEED:.2f}x line)",
            f"as fast as {fastest.name} within this machine's timing noise")


_UNTIL = {Target.GPU: "until then, run this model on the CPU (first card)",
          Target.INTEGER: "until then, this model needs a CPU or GPU (the other cards)"}
_NONE_BUILT = {Target.GPU: "no float version was made", Target.INTEGER: "no integer-only version (int8) was made"}


def _plain_shortfall(v: VariantResult, base: VariantResult | None, floor: Floor, n: int) -> tuple[str, str]:
    """How far the closest variant stays from the original, and what shipping it costs, counted in images."""
    if floor.kind is FloorKind.AGREEMENT or base is None or base.accuracy is None:
        same = round((v.top1_agreement or 0.0) * n)
        gap = f"gives the original's answer on {same} of {n} images"
        cost = f"{n - same} different answer{'s' * (n - same != 1)} in {n} images"
    else:
        more = round((base.accuracy - (v.accuracy or 0.0)) * n)
        gap = f"gets {more} more of the {n} images wrong than the original"
        cost = f"{more} more wrong answer{'s' * (more != 1)} in {n} images"
    return gap + (" and carries a warning" if v.warning else ""), cost


def _none_fits(target: Target, candidates: list[VariantResult], result: CompareResult, floor: Floor,
               why: str) -> Pick:
    """The pick when nothing fits: the closest candidate, what would help and what it means for the decision."""
    base = result.baseline
    built = [v for v in candidates if v.ok]
    if not built:
        return Pick(target, None, f"No variant for this target was built ({why}).",
                    f"Nothing to ship for this hardware: {_NONE_BUILT[target]} in this comparison; "
                    f"{_UNTIL[target]}.")
    closest = max(built, key=lambda v: (v.top1_agreement or 0.0, v.accuracy or 0.0))
    changed = closest.recipe.what_ifs()
    advice = (f"Undo {' and '.join(changed)}, or lower the floor." if changed else
              "Try more or more representative calibration images, or lower the floor." if
              closest.recipe.needs_calibration else "Lower the floor, or try another mode.")
    gap, cost = _plain_shortfall(closest, base, floor, result.fidelity_images)
    plain = (f"Nothing to ship for this hardware yet: no version that runs there gives {floor.plain}. The closest, "
             f"{closest.name}, {gap}. Shipping it anyway means accepting {cost}; otherwise the quantization has to "
             f"improve first, and {_UNTIL[target]}.")
    return Pick(target, None, f"No variant meets {floor.label}: the closest, {closest.name}, has "
                f"{floor.shortfall(closest, base)}{' and a warning' if closest.warning else ''}. {advice}", plain)


def _cpu(fits: list[VariantResult], result: CompareResult, floor: Floor) -> Pick:
    base = result.baseline
    if not fits:
        return Pick(Target.CPU, None, "float32 was not measured: there is no reference to compare with.",
                    "Nothing to recommend: the original model could not be measured, so nothing can be compared "
                    "with it.")
    timed = [v for v in fits if v.latency is not None]
    fastest = min(timed, key=lambda v: v.latency.median_ms if v.latency else 0.0) if timed else None
    quick = [v for v in fits if _keeps_up(v, fastest)]
    best = min(quick, key=lambda v: (_footprint(v), v.latency.median_ms if v.latency else 0.0))
    noise, plain_noise = _noise(best, fastest)
    speed = "" if best.latency is None else f"{_ms(best.latency.median_ms)} ms per image here"
    if best is base:
        why = "no variant with a smaller footprint meets the floor and is as fast" if len(fits) > 1 else \
            "no quantized variant meets the floor"
        plain_why = (f"no smaller version both gives {floor.plain} and runs about as fast" if len(fits) > 1 else
                     f"no smaller version gives {floor.plain}")
        return Pick(Target.CPU, best.name,
                    _clauses(f"{why}; {_mb(best.size_bytes)} file", _ram(best), speed, noise),
                    _clauses(f"ship the original model as it is: {plain_why}", plain_noise))
    return Pick(Target.CPU, best.name,
                _clauses(_smaller(best), _ram(best), _speed(best, base), noise, _fidelity(best, result)),
                _clauses(_plain_fidelity(best, result), _smaller(best, than=""),
                         _against(best, base, name="the original"), plain_noise))


def _gpu(fits: list[VariantResult], result: CompareResult, floor: Floor) -> Pick:
    base = result.baseline
    for mode in _GPU_MODES:
        v = next((v for v in fits if v.mode is mode), None)
        if v is None:
            continue
        extra = "" if v is base else ", ".join(p for p in (_smaller(v), _fidelity(v, result)) if p) + "; "
        reason = _sentence(f"{extra}GPUs compute in float, integer variants gain nothing there (not timed: no GPU "
                           "on this machine).")
        if v is base:
            return Pick(Target.GPU, v.name, reason, "Ship the original model as it is: a GPU computes in float, and "
                        f"the half-size float version (float16) {_why_not(result, Mode.FLOAT16, floor)}.")
        return Pick(Target.GPU, v.name, reason, _clauses(_plain_fidelity(v, result), _smaller(v, than="")) + (
            " A GPU computes in float, so the integer versions would gain nothing there."))
    return _none_fits(Target.GPU, [v for v in result.variants if v.mode in _GPU_MODES], result, floor,
                      "float16 and float32 were not requested")


def _why_not(result: CompareResult, mode: Mode, floor: Floor) -> str:
    """Why the variant of `mode` was not picked, in everyday words."""
    v = next((v for v in result.variants if v.mode is mode), None)
    if v is None:
        return "was not made"
    return "could not be made" if not v.ok else "carries a warning" if v.warning else f"does not give {floor.plain}"


def _integer(fits: list[VariantResult], result: CompareResult, floor: Floor) -> Pick:
    integer = [v for v in fits if v.ops is not None and v.ops.integer_only]
    if not integer:
        candidates = [v for v in result.variants if v.ok and v.ops is not None and v.ops.integer_only]
        return _none_fits(Target.INTEGER, candidates, result, floor,
                          "request int8 (int8 input and output) for an integer-only model")
    best = min(integer, key=lambda v: (v.memory.runtime_bytes if v.memory else 0, v.size_bytes or 0))
    ram = f"needs {_mb(best.memory.runtime_bytes)} of RAM (measured) and " if best.memory else "needs "
    memory = f"needs {_mb(best.memory.runtime_bytes)} of memory while it runs" if best.memory else ""
    return Pick(Target.INTEGER, best.name, f"Every op is integer; {ram}{_mb(best.size_bytes)} of flash; "
                f"{_fidelity(best, result)}.",
                _clauses(_plain_fidelity(best, result), _smaller(best, than=""), memory,
                         lead="runs entirely in integer arithmetic, as these chips require: "))

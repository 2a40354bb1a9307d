"""Which variant to ship, per deployment target, from measured numbers and a fidelity floor.

A variant can be picked only when it was built, carries no warning and meets the floor
the user set (agreement with float32, or an accuracy drop). Among those, each target has
one rule, written in `Target`'s descriptions so that the app, the HTML report and the CLI
explain the choice the same way.

Agreement is the task's own measure (quant_core.outputs.AGREEMENT, held in
`VariantResult.top1_agreement`): a classifier's top-1 agreement, a segmenter's mask IoU, a
landmark model's PCK at 5 %, an embedding's nearest-neighbour agreement, any other model's
cosine similarity; every sentence says it in the task's terms.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace

from quant_core.errors import InputError
from quant_core.fidelity import OutputFidelity
from quant_core.micro import Budget
from quant_core.modes import Mode
from quant_core.outputs import AGREEMENT
from quant_core.results.compare_result import CompareResult, VariantResult
from quant_core.results.summary import worst_output, worst_words
from quant_core.runner import Latency
from quant_core.tasks import Task, main_output

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

    AGREEMENT = "agreement"  # the task's agreement with float32 (a classifier's top-1) at least `value`
    ACCURACY_DROP = "accuracy_drop"  # accuracy at most `value` below float32's (needs labels: classifiers only)


_COSINE = (Task.GENERIC,)  # tasks whose agreement is a cosine similarity, written as a number

# A floor of agreement in everyday words, per task ({} is the floor's value: '99%', or '0.99' for a cosine).
_PLAIN = {
    Task.CLASSIFICATION: "the original's answer on at least {} of the images",
    Task.SEGMENTATION: "masks that overlap the original's by at least {} (intersection over union)",
    Task.LANDMARKS: "at least {} of the points within 5% of the image size of the original's",
    Task.EMBEDDING: "the original's nearest neighbour for at least {} of the images",
    Task.DETECTION: "the original's boxes, found again with an F1 of at least {} (matched at IoU 0.5, same class)",
    Task.GENERIC: "outputs pointing the same way as the original's (cosine similarity at least {})",
}


# What a variant's `accuracy` is for each task that can have one: against labels, or against ground truth.
_TRUTH_MEASURE = {Task.CLASSIFICATION: "accuracy", Task.DETECTION: "mAP@0.5",
                  Task.SEGMENTATION: "mask IoU with ground truth", Task.LANDMARKS: "PCK@5% with ground truth"}


def truth_measure(task: Task) -> str:
    """What a variant's accuracy measures for this task: 'accuracy', 'mAP@0.5', 'mask IoU with ground truth', ..."""
    return _TRUTH_MEASURE.get(task, "accuracy")


def agreement_text(task: Task, value: float | None) -> str:
    """An agreement as the task writes it: '95.5%', or '0.9712' for a cosine similarity."""
    return f"{value or 0.0:.4f}" if task in _COSINE else f"{value or 0.0:.1%}"


def _floor_value(task: Task, value: float) -> str:
    """The floor's value: '99%' ('99.5%'), or '0.99' for a cosine similarity."""
    return f"{value:.4g}" if task in _COSINE else f"{value:.1%}".replace(".0%", "%")


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
        """The floor in words for a classifier, e.g. 'agreement with float32 ≥ 99%' (see `label_for`)."""
        return self.label_for(Task.CLASSIFICATION)

    @property
    def plain(self) -> str:
        """The floor in everyday words for a classifier (see `plain_for`)."""
        return self.plain_for(Task.CLASSIFICATION)

    def label_for(self, task: Task) -> str:
        """The floor in the task's terms, e.g. 'mask IoU with float32 ≥ 99%', 'cosine with float32 ≥ 0.99'."""
        if self.kind is FloorKind.AGREEMENT:
            return f"{AGREEMENT[task][0]} with float32 ≥ {_floor_value(task, self.value)}"
        return f"{truth_measure(task)} drop ≤ {self.value * 100:.1f} points".replace(".0 points", " points")

    def plain_for(self, task: Task) -> str:
        """The floor in everyday words, e.g. "the original's answer on at least 99% of the images"."""
        if self.kind is FloorKind.AGREEMENT:
            return _PLAIN[task].format(_floor_value(task, self.value))
        points = f"{self.value * 100:.1f}".removesuffix(".0")
        return f"at most {points} more wrong answer{'s' * (points != '1')} per 100 images than the original"

    def applies(self, result: CompareResult) -> bool:
        """False when the floor needs labels the result does not have (a model that is not a classifier has none)."""
        return self.kind is FloorKind.AGREEMENT or (result.task is Task.CLASSIFICATION and result.labelled)

    def met(self, variant: VariantResult, baseline: VariantResult | None) -> bool:
        """True when the variant stays within the floor (float32 always does)."""
        if variant is baseline:
            return True
        if self.kind is FloorKind.AGREEMENT or baseline is None or baseline.accuracy is None:
            return variant.top1_agreement is not None and variant.top1_agreement >= self.value - 1e-9
        return variant.accuracy is not None and baseline.accuracy - variant.accuracy <= self.value + 1e-9

    def shortfall(self, variant: VariantResult, baseline: VariantResult | None, *,
                  task: Task = Task.CLASSIFICATION) -> str:
        """How the variant stands against the floor, e.g. '95.5% agreement with float32', '95.5% mask IoU ...'."""
        if self.kind is FloorKind.AGREEMENT or baseline is None or baseline.accuracy is None:
            title = AGREEMENT[task][0]
            if task in _COSINE:
                return f"{title} {agreement_text(task, variant.top1_agreement)} with float32"
            return f"{agreement_text(task, variant.top1_agreement)} {title} with float32"
        drop = (baseline.accuracy - (variant.accuracy or 0.0)) * 100
        return f"{truth_measure(task)} {drop:.1f} points below float32"


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
    task: Task = Task.CLASSIFICATION  # the model's: the floor is said in its terms

    @property
    def floor_label(self) -> str:
        """The floor in the task's terms (`Floor.label_for`)."""
        return self.floor.label_for(self.task)

    @property
    def floor_plain(self) -> str:
        """The floor in everyday words for the task (`Floor.plain_for`)."""
        return self.floor.plain_for(self.task)

    def pick(self, target: Target) -> Pick:
        """The pick for one target."""
        return next(p for p in self.picks if p.target is target)


def decide(result: CompareResult, *, floor: Floor | None = None, budget: Budget | None = None) -> Verdict:
    """The variant to ship per target.

    The integer-only target is judged on the kernels such chips run, not on this machine's
    XNNPACK: a variant's agreement there is TFLite Micro's when it ran, else the builtin
    kernels' without XNNPACK (`VariantResult.kernels`), and its pick says whether TFLite
    Micro's measured arena and the model fit the microcontroller `budget`.

    Args:
        result: a comparison (the float32 baseline should be in it).
        floor: the fidelity floor; an accuracy-drop floor on unlabelled images (or on a model
            that is not a classifier) falls back to the default agreement floor (and says so
            in `note`).
        budget: a microcontroller's RAM and flash (default `micro.Budget()`: 512 KB / 2 MB).
    """
    floor = floor or Floor()
    task = result.task
    note = plain = ""
    if not floor.applies(result):
        classifier = task is Task.CLASSIFICATION
        note = (f"{'No labels' if classifier else 'Not a classifier'}: {floor.label} cannot be checked, "
                f"so {Floor().label_for(task)} is used. ")
        floor = Floor()
        why = "without labels" if classifier else "on a model that does not answer with classes"
        plain = f"The bar set for this comparison could not be checked {why}, so {floor.plain_for(task)} is required. "
    base = result.baseline
    usable = [v for v in result.variants if v.ok and not v.warning]
    fits = [v for v in usable if floor.met(v, base)]
    on_device = [_on_device(v) for v in result.variants]  # integer-only ones with their device kernels' agreement
    device_fits = [v for v in on_device if v.ok and not v.warning and floor.met(v, base)]
    picks = (_cpu(fits, result, floor), _gpu(fits, result, floor),
             _integer(device_fits, result, floor, budget or Budget(), on_device))
    return Verdict(floor=floor, picks=picks, note=note + _coarseness(result, floor),
                   plain_note=plain + _coarseness(result, floor, plain=True), task=task)


# What one image that disagrees is, for the tasks whose agreement counts images (the others are finer grained).
_ONE_IMAGE = {Task.CLASSIFICATION: ("one disagreeing image", "one image with another answer"),
              Task.EMBEDDING: ("one image with another nearest neighbour", "one image with another nearest neighbour")}


def _coarseness(result: CompareResult, floor: Floor, *, plain: bool = False) -> str:
    """A sentence when one image moves agreement by more than the floor allows (tasks that count images only)."""
    n = result.fidelity_images
    words = _ONE_IMAGE.get(result.task)
    if words is None or floor.kind is not FloorKind.AGREEMENT or not n or 1 / n <= 1 - floor.value:
        return ""
    if result.task is Task.EMBEDDING and n < 3:
        return ""  # no nearest neighbours below 3 images: the agreement is a mean cosine
    if plain:
        return (f"With {n} images, {words[1]} is already {100 / n:.1f}% of them, so the bar "
                f"({floor.plain_for(result.task)}) allows none; more images give a finer answer.")
    return (f"With {n} images {words[0]} is {100 / n:.1f} points, so {floor.label_for(result.task)} allows none; "
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
    if result.task is not Task.CLASSIFICATION:
        return _task_fidelity(v, result)
    n = result.fidelity_images
    same = round((v.top1_agreement or 0.0) * n)
    text = f"same top-1 class as float32 on {same} of {n} images"
    if v.accuracy is not None and base is not None and base.accuracy is not None:
        text += (f", same accuracy ({v.accuracy:.1%})" if abs(v.accuracy - base.accuracy) < 1e-9
                 else f", accuracy {v.accuracy:.1%} vs {base.accuracy:.1%}")
    return text


def _plain_fidelity(v: VariantResult, result: CompareResult) -> str:
    """How close to the original a variant stays, counted in images (in the task's own terms for other models)."""
    base = result.baseline
    n = result.fidelity_images
    if v is base:
        return ""
    if result.task is not Task.CLASSIFICATION:
        return _plain_task_fidelity(v, result)
    text = f"same answer as the original on {round((v.top1_agreement or 0.0) * n)} of {n} images"
    if v.accuracy is not None and base is not None and base.accuracy is not None:
        right, base_right = round(v.accuracy * n), round(base.accuracy * n)
        text += (f", right as often as the original ({right} of {n})" if right == base_right
                 else f", right on {right} of {n} (the original: {base_right})")
    return text


def _main(v: VariantResult, result: CompareResult) -> OutputFidelity | None:
    """The variant's figures on the model's main output (the one that decides its task)."""
    main = main_output(result.output_specs)
    return next((f for f in v.outputs if main is not None and f.index == main.index), None)


def _lowest_sqnr(v: VariantResult) -> str:
    """'lowest SQNR 38.9 dB (conv2d_31)': where the variant is furthest from float32 ('' when exact)."""
    f = worst_output(v)
    if f is None or f.whole.exact or f.whole.sqnr_db is None:
        return ""
    return f"lowest SQNR {f.whole.sqnr_db:.1f} dB ({worst_words(f)})"


def _exact(v: VariantResult) -> bool:
    """True when every output of the variant is identical to float32's."""
    worst = worst_output(v)
    return worst is not None and worst.whole.exact


def _task_fidelity(v: VariantResult, result: CompareResult) -> str:
    """A non-classifier's closeness to float32 in the task's terms, from its main output, and where it is worst."""
    f, task = _main(v, result), result.task
    n = result.fidelity_images
    if _exact(v):
        return f"outputs identical to float32's on all {n} images"
    if task is Task.SEGMENTATION and f is not None and f.mask is not None:
        text = f"mask IoU {f.mask.iou:.1%} with float32, {f.mask.pixel_agreement:.2%} of pixels labelled the same"
    elif task is Task.LANDMARKS and f is not None and f.landmarks is not None and f.landmarks.pck_5 is not None:
        text = f"{f.landmarks.pck_5:.1%} of points within 5% of the image size of float32's"
        if f.landmarks.mean_error is not None:
            text += f", {f.landmarks.mean_error:.2g} px apart on average"
    elif task is Task.EMBEDDING and f is not None and f.embedding is not None and f.embedding.nn_agreement is not None:
        same = round(f.embedding.nn_agreement * n)
        text = (f"same nearest neighbour as with float32 on {same} of {n} images, mean cosine "
                f"{f.embedding.mean_cosine or 0.0:.4f}")
    else:
        text = Floor().shortfall(v, result.baseline, task=task)
    sqnr = _lowest_sqnr(v)
    return f"{text}; {sqnr}" if sqnr else text


def _plain_task_fidelity(v: VariantResult, result: CompareResult) -> str:
    """A non-classifier's closeness to the original in everyday words."""
    f, task = _main(v, result), result.task
    n = result.fidelity_images
    if _exact(v):
        return f"exactly the original's outputs on all {n} images"
    if task is Task.SEGMENTATION and f is not None and f.mask is not None:
        return f"masks that overlap the original's by {f.mask.iou:.1%} on average"
    if task is Task.LANDMARKS and f is not None and f.landmarks is not None and f.landmarks.pck_5 is not None:
        error = f.landmarks.mean_error
        apart = "" if error is None else f"points {error:.2g} px from the original's on average, "
        return f"{apart}{f.landmarks.pck_5:.1%} of them within 5% of the image size"
    if task is Task.EMBEDDING and f is not None and f.embedding is not None and f.embedding.nn_agreement is not None:
        return f"the original's nearest neighbour on {round(f.embedding.nn_agreement * n)} of {n} images"
    if task is Task.DETECTION and f is not None and f.boxes is not None:
        b = f.boxes
        return (f"{b.true_positives} of the original's {b.reference_boxes} boxes found again ({b.missed} missed, "
                f"{b.extra} extra; F1 {b.f1:.1%})")
    if task in _COSINE or task is Task.EMBEDDING:  # an embedding of fewer than 3 images: its mean cosine
        return f"outputs pointing the same way as the original's (cosine similarity {v.top1_agreement or 0.0:.4f})"
    return f"{agreement_text(task, v.top1_agreement)} {AGREEMENT[task][0]} with the original"


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


def _plain_shortfall(v: VariantResult, base: VariantResult | None, floor: Floor, n: int, *,
                     task: Task = Task.CLASSIFICATION) -> tuple[str, str]:
    """How far the closest variant stays from the original, and what shipping it costs, counted in images."""
    if task is not Task.CLASSIFICATION:
        gap, cost = _TASK_SHORTFALL[task](v.top1_agreement or 0.0, n)
        return gap + (" and carries a warning" if v.warning else ""), cost
    if floor.kind is FloorKind.AGREEMENT or base is None or base.accuracy is None:
        same = round((v.top1_agreement or 0.0) * n)
        gap = f"gives the original's answer on {same} of {n} images"
        cost = f"{n - same} different answer{'s' * (n - same != 1)} in {n} images"
    else:
        more = round((base.accuracy - (v.accuracy or 0.0)) * n)
        gap = f"gets {more} more of the {n} images wrong than the original"
        cost = f"{more} more wrong answer{'s' * (more != 1)} in {n} images"
    return gap + (" and carries a warning" if v.warning else ""), cost


def _embedding_shortfall(value: float, n: int) -> tuple[str, str]:
    """The gap and the cost for an embedding: counted in images when neighbours were compared (3 images or more)."""
    if n < 3:
        return (f"has embeddings with a cosine similarity of {value:.4f} to the original's",
                "embeddings pointing further from the original's than the bar allows")
    same = round(value * n)
    return (f"finds the original's nearest neighbour on {same} of {n} images",
            f"{n - same} different nearest neighbour{'s' * (n - same != 1)} in {n} images")


# A non-classifier's closest variant: what it gives (after "The closest, X, ...") and what shipping it means.
_TASK_SHORTFALL = {
    Task.SEGMENTATION: lambda value, n: (f"has masks that overlap the original's by {value:.1%}",
                                         f"masks that overlap the original's by only {value:.1%}"),
    Task.LANDMARKS: lambda value, n: (f"puts {value:.1%} of its points within 5% of the image size of the original's",
                                      f"{1 - value:.1%} of the points further off than that"),
    Task.EMBEDDING: _embedding_shortfall,
    Task.DETECTION: lambda value, n: (f"finds the original's boxes with an F1 of {value:.1%}",
                                      f"boxes missed or added: an F1 of only {value:.1%} against the original's"),
    Task.GENERIC: lambda value, n: (f"has outputs with a cosine similarity of {value:.4f} to the original's",
                                    "outputs further from the original's than the bar allows"),
}


def _shared_scale_advice(target: Target) -> str:
    """What helps a detector whose one output mixes pixel boxes and scores (more calibration does not)."""
    if target is Target.INTEGER:
        return ("More calibration will not help: the model's output mixes box pixels and scores in one int8 scale. "
                "Divide the boxes by the input size inside the model before they are joined with the scores, then "
                "convert again.")
    return ("More calibration will not help: the model's output mixes box pixels and scores in one int8 scale; keep "
            "the head in float with float output, or use int16x8 (Compare builds either in one click).")


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
              _shared_scale_advice(target) if result.shared_scale is not None and closest.recipe.needs_calibration
              else "Try more or more representative calibration images, or lower the floor." if
              closest.recipe.needs_calibration else "Lower the floor, or try another mode.")
    gap, cost = _plain_shortfall(closest, base, floor, result.fidelity_images, task=result.task)
    plain = (f"Nothing to ship for this hardware yet: no version that runs there gives {floor.plain_for(result.task)}. "
             "The closest, "
             f"{closest.name}, {gap}. Shipping it anyway means accepting {cost}; otherwise the quantization has to "
             f"improve first, and {_UNTIL[target]}.")
    return Pick(target, None, f"No variant meets {floor.label_for(result.task)}: the closest, {closest.name}, has "
                f"{floor.shortfall(closest, base, task=result.task)}{' and a warning' if closest.warning else ''}. "
                f"{advice}", plain)


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
        wanted = floor.plain_for(result.task)
        plain_why = (f"no smaller version both gives {wanted} and runs about as fast" if len(fits) > 1 else
                     f"no smaller version gives {wanted}")
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
    return ("could not be made" if not v.ok else "carries a warning" if v.warning else
            f"does not give {floor.plain_for(result.task)}")


def _on_device(v: VariantResult) -> VariantResult:
    """An integer-only variant with the agreement it has on device kernels (TFLite Micro's, else the builtin ones)."""
    kernels = v.kernels
    if not v.ok or v.ops is None or not v.ops.integer_only or kernels is None or kernels.integer_agreement is None:
        return v
    return replace(v, top1_agreement=kernels.integer_agreement)


def _device_words(v: VariantResult, budget: Budget) -> str:
    """Where an integer-only variant's numbers come from, and whether TFLite Micro's arena fits the budget."""
    kernels = v.kernels
    if kernels is None:
        return ""
    if kernels.micro is None or not kernels.micro.ran:
        why = f" (TFLite Micro: {kernels.micro.error})" if kernels.micro is not None else ""
        return f" Measured on the builtin kernels without XNNPACK{why}."
    m = kernels.micro
    steps = f", at most {m.max_steps:g} output steps from XNNPACK's" if m.max_steps is not None else ""
    return (f" Measured in TFLite Micro ({m.arena_bytes or 0:,} B tensor arena, measured{steps}). "
            f"{m.fits(budget)[1]}")


def _integer(fits: list[VariantResult], result: CompareResult, floor: Floor, budget: Budget,
             variants: list[VariantResult]) -> Pick:
    integer = [v for v in fits if v.ops is not None and v.ops.integer_only]
    if not integer:
        candidates = [v for v in variants if v.ok and v.ops is not None and v.ops.integer_only]
        failed = next((v for v in result.variants if v.mode is Mode.INT8 and not v.ok), None)
        why = (f"int8 could not be made: {failed.error}" if failed is not None and failed.error else
               "request int8 (int8 input and output) for an integer-only model")
        return _none_fits(Target.INTEGER, candidates, result, floor, why)
    best = min(integer, key=lambda v: (v.memory.runtime_bytes if v.memory else 0, v.size_bytes or 0))
    ram = f"needs {_mb(best.memory.runtime_bytes)} of RAM (measured) and " if best.memory else "needs "
    memory = f"needs {_mb(best.memory.runtime_bytes)} of memory while it runs" if best.memory else ""
    return Pick(Target.INTEGER, best.name, f"Every op is integer; {ram}{_mb(best.size_bytes)} of flash; "
                f"{_fidelity(best, result)}.{_device_words(best, budget)}",
                _clauses(_plain_fidelity(best, result), _smaller(best, than=""), memory,
                         lead="runs entirely in integer arithmetic, as these chips require: "))

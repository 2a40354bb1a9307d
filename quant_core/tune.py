"""Accuracy-budget search: the smallest (or fastest) variant a deployment target runs within a fidelity budget.

The target is one of the verdict's three (`quant_core.results.verdict.Target`) and decides what is
searched: on a CPU every mode (int8, int8 with float I/O, int16x8, dynamic range,
weight-only, float16) and then int8 with layers kept in float; on a GPU float16 (GPU
delegates compute in float: the verdict's GPU card picks float16 or float32); on an
integer-only accelerator int8, then int16x8 with int16 I/O, and only variants whose ops are
all integer count as within the budget there (float layers are not). On a CPU and on an
integer-only target a full int8 that meets the budget ends the search: nothing is smaller or faster.
On a CPU, while int8 misses, int8's layers are kept in float one at a time, each time the
layer that adds the most error in the current variant (`quant_core.layers`; a layer whose
fallback does not help is left quantized and the next worst is tried), until the budget
holds, nothing has helped for `patience` steps, the variant is already as large (or slow)
as the best within the budget, or `max_steps` is spent.
Every tried recipe is kept as a step of the trail; the winner is the best by the objective
among those within the budget (or, when none is, the most faithful one, said so). When
the workbench measures latency, the winner and float32 are timed at the end, and a winner
far slower than float32 is called out (`TuneResult.speed_note`): with the size objective,
int16x8 can win at tens of times float32's latency.
Progress is reported step by step and `cancel` stops the search between steps, keeping
the best found so far.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from quant_core.compare import Workbench
from quant_core.errors import InputError
from quant_core.layers import layer_name
from quant_core.modes import MODE_INFO, IOType, Mode
from quant_core.outputs import AGREEMENT
from quant_core.recipe import CalibrationSource, Recipe
from quant_core.request import Progress, ProgressCallback
from quant_core.results.compare_result import VariantResult
from quant_core.results.dataset_compare import measure_of
from quant_core.results.verdict import Floor, FloorKind, Target, truth_measure
from quant_core.tasks import Task

log = logging.getLogger(__name__)


class Objective(enum.StrEnum):
    """What the search minimizes among the recipes within the budget."""

    SIZE = "size"  # file size
    LATENCY = "latency"  # median latency measured here


# The targets as the CLI (`tune --target`) and the Layers page name them.
TARGETS: dict[str, Target] = {"cpu": Target.CPU, "gpu": Target.GPU, "integer-only": Target.INTEGER}
# What each target's search tries, in this order: the modes its verdict card can pick.
TARGET_MODES: dict[Target, tuple[Mode, ...]] = {
    Target.CPU: (Mode.INT8, Mode.INT8_FLOAT_IO, Mode.INT16X8, Mode.DYNAMIC_RANGE, Mode.WEIGHT_ONLY, Mode.FLOAT16),
    Target.GPU: (Mode.FLOAT16,),
    Target.INTEGER: (Mode.INT8, Mode.INT16X8),
}
_WHY = {
    Mode.INT8: "full int8, the smallest and fastest integer variant",
    Mode.INT8_FLOAT_IO: "int8 inside, float input and output",
    Mode.INT16X8: "int16 activations: 256x finer steps, no float layers",
    Mode.DYNAMIC_RANGE: "int8 weights, activations quantized on the fly: no calibrated ranges to miss",
    Mode.WEIGHT_ONLY: "int8 weights, float compute",
    Mode.FLOAT16: "float16 weights, float compute: half of float32's file",
}
SLOWER = 2.0  # a winner at least this many times float32's median latency is called out
_SLOW_BECAUSE = {
    Mode.INT16X8: "16x8 runs on reference kernels on most CPUs",
    Mode.DYNAMIC_RANGE: "its hybrid kernels quantize activations on every call",
}


def target_name(target: Target) -> str:
    """The target as the CLI and the page name it ('integer-only', not the enum's 'integer')."""
    return next(name for name, t in TARGETS.items() if t is target)


CLASS_AGREEMENT = AGREEMENT[Task.CLASSIFICATION][0]


@dataclass(frozen=True)
class Step:
    """One tried recipe, why the search tried it, and what it measured."""

    variant: VariantResult
    why: str
    within_budget: bool
    measure: str = CLASS_AGREEMENT  # what `variant.top1_agreement` measures: the task's agreement with float32
    truth: str = "accuracy"  # what `variant.accuracy` measures: against labels, or ground truth (mAP@0.5, ...)

    @property
    def name(self) -> str:
        return self.variant.name

    @property
    def recipe(self) -> Recipe:
        return self.variant.recipe

    @property
    def ok(self) -> bool:
        return self.variant.ok

    @property
    def latency_ms(self) -> float | None:
        return self.variant.latency.median_ms if self.variant.latency else None

    @property
    def fidelity(self) -> float:
        """What the search climbs: accuracy when known, else agreement, the task's for a model that is not a
        classifier (mask IoU, PCK@5%, ...: `measure`); -1 for a failed step."""
        v = self.variant
        value = v.accuracy if v.accuracy is not None else v.top1_agreement
        return -1.0 if not v.ok or value is None else value

    @property
    def fidelity_text(self) -> str:
        """The fidelity in words: 'accuracy 97.5%', 'mAP@0.5 87.7%', 'agreement 100.0%', 'mask IoU 98.7%'."""
        v = self.variant
        if v.accuracy is not None:
            return f"{self.truth} {v.accuracy:.1%}"
        return f"{self.measure} " + ("–" if v.top1_agreement is None else f"{v.top1_agreement:.1%}")

    def to_dict(self) -> dict[str, Any]:
        v = self.variant
        return {"name": v.name, "why": self.why, "ok": v.ok, "error": v.error, "size_bytes": v.size_bytes,
                "latency_ms": self.latency_ms, "agreement": v.top1_agreement, "measure": self.measure,
                "accuracy": v.accuracy, "accuracy_measure": self.truth, "within_budget": self.within_budget,
                "recipe": v.recipe.to_dict()}


@dataclass(frozen=True)
class TuneResult:
    """The search's trail and its winner."""

    budget: Floor
    objective: Objective
    baseline_accuracy: float | None
    steps: tuple[Step, ...]
    winner: int | None  # index into steps; None when nothing was built
    met: bool  # the winner is within the budget
    cancelled: bool
    seconds: float
    target: Target = Target.CPU
    baseline_latency_ms: float | None = None  # float32's median latency here (None: latency not measured)
    measure: str = CLASS_AGREEMENT  # what the budget and the steps' agreement measure (the task's, quant_core.outputs)
    note: str = ""  # why the search stopped short of what it would have tried, in one line ("" when it did not)
    task: Task = Task.CLASSIFICATION  # the model's: the budget's words

    @classmethod
    def of(cls, budget: Floor, objective: Objective, steps: Sequence[Step], *, target: Target = Target.CPU,
           baseline_accuracy: float | None = None, baseline_latency_ms: float | None = None, cancelled: bool = False,
           seconds: float = 0.0, measure: str = CLASS_AGREEMENT, note: str = "",
           task: Task = Task.CLASSIFICATION) -> TuneResult:
        """The result of these steps (also of a search interrupted after them): the winner chosen by `best_step`."""
        winner = best_step(steps, objective)
        return cls(budget=budget, objective=objective, baseline_accuracy=baseline_accuracy, steps=tuple(steps),
                   winner=winner, met=winner is not None and steps[winner].within_budget, cancelled=cancelled,
                   seconds=seconds, target=target, baseline_latency_ms=baseline_latency_ms, measure=measure,
                   note=note, task=task)

    @property
    def best(self) -> Step | None:
        """The winning step."""
        return None if self.winner is None else self.steps[self.winner]

    @property
    def speed_note(self) -> str:
        """A sentence when the winner runs far slower than float32 here; '' otherwise (or when not timed)."""
        return speed_note(self.best, self.baseline_latency_ms)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the budget, the target, the objective, every step (with its recipe) and the winner."""
        best = self.best
        return {"budget": {"kind": self.budget.kind.value, "value": self.budget.value,
                           "label": self.budget.label_for(self.task)},
                "target": target_name(self.target), "objective": self.objective.value, "measure": self.measure,
                "baseline_accuracy": self.baseline_accuracy, "baseline_latency_ms": self.baseline_latency_ms,
                "met": self.met, "cancelled": self.cancelled, "seconds": round(self.seconds, 3),
                "steps": [s.to_dict() for s in self.steps], "winner": None if best is None else best.to_dict(),
                "speed_note": self.speed_note, "note": self.note}


def speed_note(step: Step | None, baseline_latency_ms: float | None) -> str:
    """'int16x8 runs 43x slower than float32 here (...)' when the step takes at least SLOWER times float32's median
    latency; '' when it does not, or when either was not timed."""
    if step is None or step.latency_ms is None or not baseline_latency_ms:
        return ""
    ratio = step.latency_ms / baseline_latency_ms
    if ratio < SLOWER:
        return ""
    times = f"{ratio:.0f}x" if ratio >= 10 else f"{ratio:.1f}x"
    because = _SLOW_BECAUSE.get(step.recipe.mode)
    return (f"{step.name} runs {times} slower than float32 here ({step.latency_ms:.3g} ms against "
            f"{baseline_latency_ms:.3g} ms per image{'; ' + because if because else ''}). If speed matters, search "
            "with the latency objective.")


def no_winner_advice(target: Target) -> str:
    """What to do when no searched recipe meets the budget on this target."""
    if target is Target.INTEGER:
        return "Nothing integer-only meets it: loosen the budget, or calibrate with more representative images."
    return "float32 itself meets it on this target: ship float32, or loosen the budget."


Scorer = Callable[[Sequence[VariantResult]], tuple[VariantResult, ...]]  # re-judges variants' fidelity


def tune(bench: Workbench, budget: Floor, *, objective: Objective = Objective.SIZE, target: Target = Target.CPU,
         base: Recipe | None = None, max_steps: int = 12, patience: int = 3,
         on_progress: ProgressCallback | None = None, on_step: Callable[[Step], None] | None = None,
         cancel: threading.Event | None = None, scorer: Scorer | None = None) -> TuneResult:
    """Searches recipes on an open workbench (its options decide whether latency is measured).

    Args:
        bench: the model and images.
        budget: the fidelity floor a recipe must meet (agreement, or accuracy drop with labels).
        objective: what to minimize among the recipes within the budget.
        target: where the winner will run: what is searched (see the module's docstring).
        base: the int8 recipe to start from (its calibration, per-channel and backend settings).
        max_steps: at most this many recipes are built (float32 not counted).
        patience: stop falling back layers after this many steps without a fidelity gain.
        on_step: called with each step as soon as it is measured (a caller keeps the best so far).
        scorer: judges each built variant's fidelity elsewhere, e.g. on a whole dataset through an
            executor (`quant_core.serving.dataset_evaluation.DatasetScorer`); by default, the workbench's images.

    Raises:
        InputError: a latency objective on a workbench that does not measure latency, or a bad base.
    """
    base = _start(bench, objective=objective, base=base, max_steps=max_steps)
    report, start = on_progress or (lambda p: None), time.perf_counter()
    score, timed = scorer or tuple, objective is Objective.LATENCY
    baseline = score([bench.evaluate(Recipe(Mode.FLOAT32), time_it=timed)])[0]
    measure = _measure(bench, baseline)
    steps: list[Step] = []

    def tried(recipe: Recipe, why: str) -> Step:
        report(Progress(len(steps) / max_steps, f"Step {len(steps) + 1}: {recipe.name} ({why})", recipe.name))
        variant = score([bench.evaluate(recipe, time_it=timed)])[0]
        runs_there = target is not Target.INTEGER or (variant.ops is not None and variant.ops.integer_only)
        step = Step(variant, why, within_budget=variant.ok and runs_there and budget.met(variant, baseline),
                    measure=measure, truth=truth_measure(bench.reference.task))
        steps.append(step)
        if on_step is not None:
            on_step(step)
        report(Progress(len(steps) / max_steps, f"Step {len(steps)}: {_describe(step)}", recipe.name))
        return step

    def stopped() -> bool:
        return len(steps) >= max_steps or (cancel is not None and cancel.is_set())

    _try_modes(base, target, steps, tried, stopped)
    note = _fall_back_layers(bench, steps[0], steps, tried, stopped, patience=patience, objective=objective,
                             report=report, max_steps=max_steps) \
        if target is Target.CPU and steps and steps[0].recipe.mode is Mode.INT8 else ""
    result = TuneResult.of(budget, objective, steps, target=target, baseline_accuracy=baseline.accuracy,
                           cancelled=cancel is not None and cancel.is_set(), seconds=time.perf_counter() - start,
                           measure=measure, note=note, task=bench.reference.task)
    if bench.options.measure_latency and not result.cancelled and result.best is not None and baseline.ok:
        report(Progress(0.99, "Timing the winner and float32"))
        result = _timed(bench, result, baseline)
    report(Progress(1.0, "Done: " + (_describe(result.best) if result.best is not None else "nothing was built")))
    return result


def budget_of(points: float, *, task: Task, labelled: bool) -> Floor:
    """The search's budget: `points` below float32 of the score against labels or ground truth when there is one
    (accuracy, mAP@0.5, ...), else of the task's agreement with float32 (top-1 agreement, box F1, ...)."""
    return Floor(FloorKind.ACCURACY_DROP, points / 100) if labelled else Floor(FloorKind.AGREEMENT, 1 - points / 100)


def _measure(bench: Workbench, baseline: VariantResult) -> str:
    """What the steps' agreement measures: a classifier's top-1 agreement, else the task's (as scored on float32)."""
    reference = bench.reference
    return CLASS_AGREEMENT if reference.classifier else measure_of(reference.task, reference.specs, baseline.outputs)


def _start(bench: Workbench, *, objective: Objective, base: Recipe | None, max_steps: int) -> Recipe:
    """The int8 recipe the search starts from, once the search's arguments are checked against the workbench."""
    if objective is Objective.LATENCY and not bench.options.measure_latency:
        raise InputError("the latency objective needs latency measured; drop --no-latency")
    if not 1 <= max_steps <= 100:
        raise InputError(f"max steps must be from 1 to 100, got {max_steps}")
    base = base or Recipe(Mode.INT8)
    if base.mode is not Mode.INT8 or base.float_layers:
        raise InputError("the search starts from a plain int8 recipe")
    return base


def _try_modes(base: Recipe, target: Target, steps: list[Step], tried: Callable[[Recipe, str], Step],
               stopped: Callable[[], bool]) -> None:
    """Builds each mode the target runs, in order, until full int8 meets the budget or the search stops."""
    for mode in TARGET_MODES[target]:  # the first is always built; cancel stops the search between steps
        if steps and (stopped() or (steps[0].within_budget and steps[0].recipe.mode is Mode.INT8)):
            break  # int8 within the budget: nothing is smaller or faster
        tried(_recipe_for(base, mode, target), _WHY[mode])


def _recipe_for(base: Recipe, mode: Mode, target: Target) -> Recipe:
    """The base's settings for another mode (its backend where that backend builds the mode); int16 I/O for 16x8 on an
    integer-only target (float I/O would need float ops at the edges)."""
    if mode is base.mode:
        return base
    backend = base.backend if base.backend in MODE_INFO[mode].backends else None
    io_type = IOType.INT16 if mode is Mode.INT16X8 and target is Target.INTEGER else None
    return replace(base, mode=mode, backend=backend, io_type=io_type)


def _fall_back_layers(bench: Workbench, first: Step, steps: list[Step], tried: Callable[[Recipe, str], Step],
                      stopped: Callable[[], bool], *, patience: int, objective: Objective, report: ProgressCallback,
                      max_steps: int) -> str:
    """Keeps int8's worst layers in float one at a time while int8 misses the budget and a smaller (faster) winner is
    still possible. Returns why it could not try that, in one line ("" when it could)."""
    current, stale, passed = first, 0, set[str]()  # passed: layers whose fallback did not help
    while current.ok and not current.within_budget and not stopped() and stale < patience:
        winner = best_step(steps, objective)
        if winner is not None and steps[winner].within_budget and _cost(current, objective) >= _cost(steps[winner],
                                                                                                      objective):
            break  # a float layer more only adds to the file (and the time): it cannot beat the best found
        report(Progress(len(steps) / max_steps, f"Measuring the error by layer of {current.name}", current.name))
        try:
            errors = bench.layer_report(current.recipe)
        except InputError as err:  # e.g. a custom op the per-layer comparison cannot run: the modes tried stand
            log.info("no layer fallback for %s: %s", current.name, err)
            return f"no layer of {current.name} was kept in float: {err}"
        worst = [layer for layer in errors.worst(len(errors.layers)) if layer.tensor not in passed]
        if not worst:
            break
        layer = worst[0]
        why = (f"keeps {layer.op} {layer_name(layer.tensor)} in float: it adds the most error "
               f"({layer.added:.1%})")
        step = tried(replace(current.recipe, float_layers=(*current.recipe.float_layers, layer.tensor)), why)
        stale = 0 if step.fidelity > current.fidelity else stale + 1
        if step.ok and step.fidelity >= current.fidelity:
            current = step
        else:
            passed.add(layer.tensor)
    return ""


def _timed(bench: Workbench, result: TuneResult, baseline: VariantResult) -> TuneResult:
    """The result with the winner and float32 timed (the size objective builds without timing)."""
    best = result.best
    assert best is not None and result.winner is not None
    steps = list(result.steps)
    if best.latency_ms is None and best.variant.tflite_sha256:
        steps[result.winner] = replace(best, variant=bench.time(best.variant))
    reference = baseline.latency or bench.time(baseline).latency
    return replace(result, steps=tuple(steps), baseline_latency_ms=reference.median_ms if reference else None)


def _cost(step: Step, objective: Objective) -> float:
    """What the objective minimizes for a step (inf when unknown)."""
    value = step.latency_ms if objective is Objective.LATENCY else step.variant.size_bytes
    return float("inf") if value is None else float(value)


def best_step(steps: Sequence[Step], objective: Objective) -> int | None:
    """The best step by the objective within the budget; else the most faithful (then smallest) built one."""
    built = [k for k, s in enumerate(steps) if s.ok]
    if not built:
        return None
    within = [k for k in built if steps[k].within_budget]
    if within:
        return min(within, key=lambda k: (_cost(steps[k], objective), -steps[k].fidelity))
    return max(built, key=lambda k: (steps[k].fidelity, -(steps[k].variant.size_bytes or 0)))


def _describe(step: Step) -> str:
    v = step.variant
    if not v.ok:
        return f"{v.name} failed: {v.error}"
    size = f"{(v.size_bytes or 0) / 2**20:.2f} MB"
    latency = f", {step.latency_ms:.2f} ms" if step.latency_ms is not None else ""
    return f"{step.name}: {step.fidelity_text}, {size}{latency}, " + ("within the budget" if step.within_budget else
                                                           "outside the budget")


@dataclass(frozen=True)
class CalibrationPoint:
    """One calibration what-if: a calibrated mode built from `count` images (or random data) and what it measured."""

    count: int
    source: CalibrationSource
    ok: bool
    agreement: float | None
    accuracy: float | None


@dataclass(frozen=True)
class CalibrationSweep:
    """How fidelity depends on calibration: real images at growing counts, and random data as the what-if."""

    mode: Mode
    images: int
    points: tuple[CalibrationPoint, ...]
    measure: str = CLASS_AGREEMENT  # what each point's agreement measures (the task's, quant_core.outputs)


SWEEP_COUNTS = (1, 5, 10, 20)


def calibration_sweep(bench: Workbench, *, base: Recipe | None = None,
                      on_progress: ProgressCallback | None = None, scorer: Scorer | None = None) -> CalibrationSweep:
    """Builds `base` (int8 by default) calibrated on 1, 5, 10, 20 and all images, and on random data.

    Calibration sets are nested (`Workbench.calibration_data`), so each larger count feeds
    only its extra images; every point is a real build, measured like any variant (with
    `scorer`, all of them judged together elsewhere, e.g. on a whole dataset: one pass).

    Raises:
        InputError: a mode that needs no calibration.
    """
    base = base or Recipe(Mode.INT8)
    if not base.needs_calibration:
        raise InputError(f"{base.mode} needs no calibration: nothing to sweep")
    report = on_progress or (lambda p: None)
    total = len(bench.x)
    counts = sorted({c for c in SWEEP_COUNTS if c < total} | {total})
    recipes = [replace(base, calibration_count=c, calibration_source=CalibrationSource.IMAGES) for c in counts]
    recipes.append(replace(base, calibration_count=total, calibration_source=CalibrationSource.RANDOM))
    variants = []
    for k, recipe in enumerate(recipes):
        what = "random data" if recipe.calibration_source is CalibrationSource.RANDOM else \
            f"{recipe.calibration_count} image{'s' * (recipe.calibration_count != 1)}"
        report(Progress(k / len(recipes), f"{base.mode} calibrated on {what}"))
        variants.append(bench.evaluate(
            recipe, name=f"{recipe.name}@{recipe.calibration_source}:{recipe.calibration_count}", time_it=False))
    if scorer is not None:
        report(Progress(0.95, "Scoring every calibration on the whole dataset"))
        variants = list(scorer(variants))
    points = tuple(CalibrationPoint(r.calibration_count, r.calibration_source, v.ok, v.top1_agreement, v.accuracy)
                   for r, v in zip(recipes, variants))
    report(Progress(1.0, "Done"))
    scored = next((v for v in variants if v.ok), variants[0])
    return CalibrationSweep(mode=base.mode, images=total, points=points, measure=_measure(bench, scored))

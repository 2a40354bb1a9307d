"""The per-variant summary: one column spec behind the CSV, the CLI table, the app table and the HTML report.

Every number is rounded once, by `rounded` with its column's `digits`, when the summary is
built; the CSV writes that number and every table shows it through `Column.text`, so no two
views can disagree on a value or on which one is best.

The columns follow the model's task (`CompareResult.task`): a classifier's are `COLUMNS`;
any other model's are its task's agreement with float32 (quant_core.outputs.AGREEMENT), the
task's own figures from its main output, and the lowest SQNR over its outputs with where it
is worst (`task_columns`).
"""

from __future__ import annotations

import enum
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import cast

from quant_core.fidelity import OutputFidelity
from quant_core.outputs import AGREEMENT as TASK_AGREEMENT
from quant_core.results.compare_result import CompareResult, Prediction, VariantResult
from quant_core.tasks import CoordSpace, OutputSpec, Role, Task, main_output

Value = int | float | str | bool | None
MISSING = "–"  # a number that was not measured (failed variant, latency off, no labels)
EXACT = "exact"  # an infinite SQNR: the outputs are identical to float32's


def rounded(value: float | None, digits: int) -> float | None:
    """The one rounding rule: `digits` decimals, None kept (used by the summary and the JSON report)."""
    return None if value is None else round(float(value), digits)


def _rounded_if_fractional(value: Value, digits: int) -> Value:
    """Rounds floats (numpy's too); leaves counts, flags, text and None alone."""
    fractional = isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral)
    return rounded(cast(float, value), digits) if fractional else value


class Unit(enum.StrEnum):
    """What a column's value is, and so how it is shown."""

    TEXT = "text"
    YES_NO = "yes/no"
    KB = "KB"  # the value is a byte count (exact in the CSV); tables show KB with `digits` decimals
    FACTOR = "factor"  # 4.00x
    PERCENT = "percent"  # the value is a fraction; `digits` counts its decimals, so 3 shows 95.8%
    NUMBER = "number"


class Better(enum.StrEnum):
    """Which end of a column is highlighted as the best value."""

    HIGHER = "higher"
    LOWER = "lower"
    NONE = "none"


class Needs(enum.Flag):
    """When a column says something; tables leave it out otherwise (the CSV always has every column)."""

    NOTHING = 0
    LABELS = enum.auto()  # accuracy needs every image's true class
    TOP5 = enum.auto()  # with five classes or fewer every top-5 figure is 100 %
    A_VALUE = enum.auto()  # free text, shown only when some variant has any
    # A whole message, too long for a cell: only the CSV has it as a column; tables print it beneath
    # themselves (`failure_lines`), where it can wrap without stretching every row.
    BENEATH = enum.auto()


_SCALE = {Unit.KB: 1 / 1024}  # from the value to the number a table shows

_FORMAT: dict[Unit, Callable[[float, int], str]] = {  # numbers shown (see Column.shown) -> text
    Unit.KB: lambda v, d: f"{v:,.{d}f}",
    Unit.FACTOR: lambda v, d: f"{v:.{d}f}x",
    Unit.PERCENT: lambda v, d: f"{v:.{max(d - 2, 0)}%}",
    Unit.NUMBER: lambda v, d: f"{v:,.{d}f}",
}


def _missing(value: Value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


@dataclass(frozen=True)
class Column:
    """One column of the summary.

    `key` names it where machines read it (the CSV header); `title` where people do (app,
    CLI, HTML). `digits` is the column's one rounding rule: decimals kept of a float value
    (for KB: decimals of the KB shown; the byte count itself is exact). `explain` is the
    one-line plain explanation shown on hover in the app and in the report's glossary.
    """

    key: str
    title: str
    unit: Unit
    value: Callable[[VariantResult], Value]
    digits: int = 0
    better: Better = Better.NONE
    needs: Needs = Needs.NOTHING
    # Agreement and |Δp| compare with float32, which scores perfectly against itself: its row is never "best".
    against_float32: bool = False
    explain: str = ""

    def cell(self, variant: VariantResult) -> Value:
        """The variant's value in this column, rounded by the column's rule."""
        return _rounded_if_fractional(self.value(variant), self.digits)

    def shown(self, value: Value) -> Value:
        """The value in the unit a table shows (KB for a byte count; text for yes/no and text)."""
        if _missing(value):
            return "" if self.unit is Unit.TEXT else None
        if self.unit is Unit.YES_NO:
            return "yes" if value else "no"
        if self.unit is Unit.TEXT:
            return str(value)
        return cast(float, value) * _SCALE.get(self.unit, 1)

    def text(self, shown: Value) -> str:
        """A shown value (see `shown`) as every table prints it."""
        if _missing(shown):
            return "" if self.unit is Unit.TEXT else MISSING
        if self.unit in (Unit.TEXT, Unit.YES_NO):
            return str(shown)
        if math.isinf(cast(float, shown)):
            return EXACT
        return _FORMAT[self.unit](cast(float, shown), self.digits)

    def format_number(self, raw: float | None) -> str:
        """A raw number of this column's kind (e.g. the source model's accuracy) as the tables print it."""
        return self.text(self.shown(_rounded_if_fractional(raw, self.digits)))


def _latency(field: str) -> Callable[[VariantResult], float | None]:
    return lambda v: None if v.latency is None else getattr(v.latency, field)


VARIANT = Column("mode", "variant", Unit.TEXT, lambda v: v.name,
                 explain="the quantization mode the model was converted with; float32 is the unquantized reference")
STATUS = Column("status", "status", Unit.TEXT, lambda v: v.status.value,
                explain="ok when the variant was built and passed its checks; failed otherwise (the reason is "
                "printed with the table)")
SIZE = Column("size_bytes", "size (KB)", Unit.KB, lambda v: v.size_bytes, digits=1, better=Better.LOWER,
              explain="size of the .tflite file in KB (1 KB = 1,024 bytes): what your app ships and its users download")
X_SMALLER = Column("x_smaller", "x smaller", Unit.FACTOR, lambda v: 1 / v.size_ratio if v.size_ratio else None,
                   digits=2, better=Better.HIGHER,
                   explain="float32's file size divided by this variant's: 4.00x would be a quarter of the bytes")
MEMORY = Column("runtime_memory_bytes", "memory (KB)", Unit.KB,
                lambda v: None if v.memory is None else v.memory.runtime_bytes, digits=0, better=Better.LOWER,
                explain="heap the LiteRT interpreter holds while running one image, in KB: tensor arena, scratch "
                "and packed weights (measured, not estimated; the model file comes on top)")
MEDIAN_MS = Column("latency_median_ms", "median ms", Unit.NUMBER, _latency("median_ms"), digits=3,
                   better=Better.LOWER, explain="time of one invoke() on this machine's CPU, median over many runs "
                   "after warm-up (preprocessing not included); phones differ")
P90_MS = Column("latency_p90_ms", "p90 ms", Unit.NUMBER, _latency("p90_ms"), digits=3, better=Better.LOWER,
                explain="time of one invoke() that 90% of the runs beat: the slow end of the usual spread on this "
                "machine's CPU; phones differ")
AGREEMENT = Column("top1_agreement", "agreement", Unit.PERCENT, lambda v: v.top1_agreement, digits=3,
                   better=Better.HIGHER, against_float32=True,
                   explain="share of images where this variant's top-1 class is the same as float32's")
TOP5_AGREEMENT = Column("top5_agreement", "top-5 agreement", Unit.PERCENT, lambda v: v.top5_agreement, digits=3,
                        better=Better.HIGHER, needs=Needs.TOP5, against_float32=True,
                        explain="share of images where float32's top-1 class is among this variant's top five")
ACCURACY = Column("accuracy", "accuracy", Unit.PERCENT, lambda v: v.accuracy, digits=3, better=Better.HIGHER,
                  needs=Needs.LABELS,
                  explain="share of images whose top-1 class is the true label (coarse on few images)")
TOP5_ACCURACY = Column("top5_accuracy", "top-5 accuracy", Unit.PERCENT, lambda v: v.top5_accuracy, digits=3,
                       better=Better.HIGHER, needs=Needs.LABELS | Needs.TOP5,
                       explain="share of images whose true label is among this variant's top five classes")
MEAN_ABS_DIFF = Column("mean_abs_prob_diff", "mean |Δp|", Unit.NUMBER, lambda v: v.mean_abs_diff, digits=4,
                       better=Better.LOWER, against_float32=True,
                       explain="per image, the largest change of any class probability vs float32, averaged over the "
                       "images (0 = identical outputs; 0.01 = one percentage point)")
INTEGER_ONLY = Column("integer_only", "integer-only", Unit.YES_NO,
                      lambda v: None if v.ops is None else v.ops.integer_only,
                      explain="yes when no op reads or writes a float tensor: runs on integer-only NPUs, DSPs and "
                      "the Edge TPU with no CPU fallback")
NOTE = Column("warning", "note", Unit.TEXT, lambda v: v.warning, needs=Needs.A_VALUE,
              explain="a warning on a usable variant, e.g. when it changes float32's top-1 class on many images")
ERROR = Column("error", "error", Unit.TEXT, lambda v: v.error, needs=Needs.BENEATH,
               explain="why the variant could not be built or failed its checks")

COLUMNS: tuple[Column, ...] = (VARIANT, STATUS, SIZE, X_SMALLER, MEMORY, MEDIAN_MS, P90_MS, AGREEMENT,
                               TOP5_AGREEMENT, ACCURACY, TOP5_ACCURACY, MEAN_ABS_DIFF, INTEGER_ONLY, NOTE, ERROR)


# ----------------------------------------------------------------------------------------------- other tasks

_AGREEMENT_KEYS = {Task.SEGMENTATION: "mask_iou", Task.LANDMARKS: "pck_5", Task.EMBEDDING: "nn_agreement",
                   Task.DETECTION: "box_f1", Task.GENERIC: "cosine"}  # the CSV header of each task's agreement
_AXES = ("x", "y", "z")
_CHANNEL_WORDS = {Role.LANDMARKS: "point", Role.HEATMAPS: "heatmap", Role.CLASS_MAP: "class",
                  Role.CLASS_SCORES: "class", Role.EMBEDDING: "dimension", Role.BOXES: "box value",
                  Role.SCORE: "value"}  # what one channel of an output is; "channel" for the rest


def agreement_column(task: Task) -> Column:
    """The task's agreement with float32 (`VariantResult.top1_agreement` holds it), titled as the task says."""
    if task is Task.CLASSIFICATION:
        return AGREEMENT
    title, explain = TASK_AGREEMENT[task]
    cosine = _AGREEMENT_KEYS[task] == "cosine"
    return Column(_AGREEMENT_KEYS[task], title, Unit.NUMBER if cosine else Unit.PERCENT,
                  lambda v: v.top1_agreement, digits=4 if cosine else 3, better=Better.HIGHER,
                  against_float32=True, explain=explain)


def axis_name(k: int) -> str:
    """A value of a point: x, y, z, then 'value 4', ..."""
    return _AXES[k] if k < len(_AXES) else f"value {k + 1}"


def channel_word(role: Role) -> str:
    """What one channel of an output of this role is: 'point', 'class', 'heatmap', ... or 'channel'."""
    return _CHANNEL_WORDS.get(role, "channel")


def channel_name(role: Role, k: int, names: Sequence[str] = ()) -> str:
    """One channel of an output in words: 'point 67', 'class 3', 'channel 2', or its own name ('class score 1')."""
    return names[k] if k < len(names) else f"{channel_word(role)} {k}"


def worst_output(v: VariantResult) -> OutputFidelity | None:
    """The output furthest from float32's: the lowest SQNR (None when the variant has no outputs measured)."""
    return min(v.outputs, key=lambda f: (f.whole.rank, f.index), default=None)


def worst_words(f: OutputFidelity) -> str:
    """Where an output is worst, e.g. 'conv2d_21 point 67, axis z' (its name alone when it has one channel)."""
    words = f.name
    if f.worst_channel is not None and len(f.channels) > 1:
        words += " " + channel_name(f.role, f.worst_channel, f.channel_names)
    if f.worst_axis is not None and len(f.axes) > 1:
        words += f", axis {axis_name(f.worst_axis)}"
    return words


def _min_sqnr(v: VariantResult) -> float | None:
    """The lowest SQNR over the variant's outputs: infinite when every output is exact (shown as `EXACT`)."""
    f = worst_output(v)
    return None if f is None else math.inf if f.whole.exact else f.whole.sqnr_db


def _worst(v: VariantResult) -> str | None:
    """Where the variant is furthest from float32 (None when it is exact everywhere)."""
    f = worst_output(v)
    return None if f is None or f.whole.exact else worst_words(f)


MIN_SQNR = Column("min_sqnr_db", "min SQNR dB", Unit.NUMBER, _min_sqnr, digits=1, better=Better.HIGHER,
                  against_float32=True,
                  explain="the lowest signal-to-quantization-noise ratio over the model's outputs, against "
                  "float32's on the same images, in dB (higher is closer; about 6 dB per bit); exact: identical "
                  "outputs")
WORST = Column("worst", "worst", Unit.TEXT, _worst,
               explain="the output with the lowest SQNR and, within it, the channel (point, class, map) furthest "
               "from float32's: where to look first")


TRUTH_SCORE = Column("truth_score", "vs ground truth", Unit.PERCENT, lambda v: v.accuracy, digits=3,
                     better=Better.HIGHER, needs=Needs.LABELS,
                     explain="the main output against the ground truth you gave: mask IoU (mean IoU over a class "
                     "map's classes) or the share of points within 5% of the image size of the true point")
TASK_NOTE = replace(NOTE, explain="a warning on a usable variant, e.g. when it strays far from float32 on the "
                    "task's measure")


def _main_figure(index: int, read: Callable[[OutputFidelity], float | None]) -> Callable[[VariantResult], Value]:
    """A column's value read from the variant's main output (None when it was not measured)."""
    def value(v: VariantResult) -> Value:
        f = next((f for f in v.outputs if f.index == index), None)
        return None if f is None else read(f)
    return value


def _lowest(values: Sequence[float | None]) -> float | None:
    """The smallest of the values that were measured."""
    found = [x for x in values if x is not None]
    return min(found) if found else None


def _segmentation_columns(main: OutputSpec) -> tuple[Column, ...]:
    """Pixel agreement; for a class map also the worst class's IoU."""
    agreement = Column("pixel_agreement", "pixel agreement", Unit.PERCENT,
                       _main_figure(main.index, lambda f: f.mask.pixel_agreement if f.mask else None), digits=4,
                       better=Better.HIGHER, against_float32=True,
                       explain="share of pixels given the same label as by float32 (foreground or background; "
                       "for class maps the same class)")
    if main.role is not Role.CLASS_MAP:
        return (agreement,)
    lowest = Column("min_class_iou", "lowest class IoU", Unit.PERCENT,
                    _main_figure(main.index, lambda f: _lowest(f.mask.class_iou) if f.mask else None), digits=3,
                    better=Better.HIGHER, against_float32=True,
                    explain="the IoU with float32 of the class that fares worst (mask IoU is the mean over classes)")
    return agreement, lowest


def _landmark_columns(main: OutputSpec) -> tuple[Column, ...]:
    """Mean point error, and as a share of the image size when the points' units are known."""
    unknown = main.space is CoordSpace.UNKNOWN
    error = Column("mean_point_error", "mean point error" + ("" if unknown else " (px)"), Unit.NUMBER,
                   _main_figure(main.index, lambda f: f.landmarks.mean_error if f.landmarks else None), digits=3,
                   better=Better.LOWER, against_float32=True,
                   explain="mean distance between this variant's points and float32's (x, y), "
                   + ("in the output's own units (unknown)" if unknown else "in input pixels"))
    share = Column("mean_point_error_share", "error / image size", Unit.PERCENT,
                   _main_figure(main.index, lambda f: f.landmarks.mean_error_share if f.landmarks else None),
                   digits=5, better=Better.LOWER, against_float32=True,
                   explain="mean point error as a share of the input's larger side")
    return (error,) if unknown else (error, share)


def _embedding_columns(main: OutputSpec) -> tuple[Column, ...]:
    """Mean and lowest cosine similarity of the images' embeddings with float32's."""
    return (Column("mean_cosine", "mean cosine", Unit.NUMBER,
                   _main_figure(main.index, lambda f: f.embedding.mean_cosine if f.embedding else None), digits=4,
                   better=Better.HIGHER, against_float32=True,
                   explain="cosine similarity of each image's embedding with float32's, mean over the images"),
            Column("min_cosine", "min cosine", Unit.NUMBER,
                   _main_figure(main.index, lambda f: f.embedding.min_cosine if f.embedding else None), digits=4,
                   better=Better.HIGHER, against_float32=True,
                   explain="the lowest cosine similarity with float32's embedding over the images"))


def _box_figure(index: int, name: str) -> Callable[[VariantResult], Value]:
    """One of a detector's box figures (`BoxSummary`), read from its main output."""
    return _main_figure(index, lambda f: getattr(f.boxes, name) if f.boxes else None)


def _detection_columns(main: OutputSpec) -> tuple[Column, ...]:
    """Recall and precision against float32's boxes, the matches' IoU and keypoint error."""
    def counts(v: VariantResult) -> Value:
        f = next((f for f in v.outputs if f.index == main.index), None)
        return None if f is None or f.boxes is None else f"{f.boxes.missed} / {f.boxes.extra}"

    return (Column("box_recall", "recall", Unit.PERCENT, _box_figure(main.index, "recall"), digits=3,
                   better=Better.HIGHER, against_float32=True,
                   explain="share of float32's boxes this variant finds again (IoU >= 0.5, same class)"),
            Column("box_precision", "precision", Unit.PERCENT, _box_figure(main.index, "precision"), digits=3,
                   better=Better.HIGHER, against_float32=True,
                   explain="share of this variant's boxes that match one of float32's"),
            Column("missed_extra", "missed / extra", Unit.TEXT, counts,
                   explain="float32's boxes this variant misses / boxes it adds that float32 does not have"),
            Column("box_iou", "box IoU", Unit.NUMBER, _box_figure(main.index, "mean_iou"), digits=3,
                   better=Better.HIGHER, against_float32=True,
                   explain="mean IoU of the matched boxes with float32's (1: the same box)"),
            Column("keypoint_error", "keypoint error (px)", Unit.NUMBER,
                   _box_figure(main.index, "mean_keypoint_error_px"), digits=3, better=Better.LOWER,
                   against_float32=True, explain="mean distance of the matched boxes' keypoints from float32's, in "
                   "input pixels"))


MAP_50 = Column("map_50", "mAP@0.5", Unit.PERCENT, lambda v: v.accuracy, digits=3, better=Better.HIGHER,
                needs=Needs.LABELS, explain="mean average precision against the true boxes you gave, at IoU 0.5 "
                "(pycocotools' COCO evaluation)")


def _map_50_95(v: VariantResult) -> Value:
    f = next((f for f in v.outputs if f.boxes is not None), None)
    return None if f is None or f.boxes is None else f.boxes.map_50_95


MAP_50_95 = Column("map_50_95", "mAP@0.5:0.95", Unit.PERCENT, _map_50_95, digits=3, better=Better.HIGHER,
                   needs=Needs.LABELS, explain="mean average precision against the true boxes, averaged over IoU "
                   "0.5, 0.55, ..., 0.95 (COCO's headline figure)")

_TASK_FIGURES: dict[Task, Callable[[OutputSpec], tuple[Column, ...]]] = {
    Task.SEGMENTATION: _segmentation_columns, Task.LANDMARKS: _landmark_columns, Task.EMBEDDING: _embedding_columns,
    Task.DETECTION: _detection_columns,
}


def task_columns(result: CompareResult) -> tuple[Column, ...]:
    """Every summary column of this result's task, in order (a classifier's: `COLUMNS`)."""
    if result.task is Task.CLASSIFICATION:
        return COLUMNS
    main = main_output(result.output_specs)
    figures = _TASK_FIGURES.get(result.task, lambda _: ())(main) if main is not None else ()
    truth = (MAP_50, MAP_50_95) if result.task is Task.DETECTION else (TRUTH_SCORE,)
    return (VARIANT, STATUS, SIZE, X_SMALLER, MEMORY, MEDIAN_MS, P90_MS, agreement_column(result.task), *figures,
            *truth, MIN_SQNR, WORST, INTEGER_ONLY, TASK_NOTE, ERROR)


@dataclass(frozen=True)
class Row:
    """One variant's rounded values, in the order of `Summary.columns`."""

    name: str
    ok: bool
    is_float32: bool  # the baseline every `against_float32` column is measured with
    warned: bool  # carries a warning (changes many predictions): never highlighted as best
    values: tuple[Value, ...]


@dataclass(frozen=True)
class Summary:
    """The summary of one comparison: its columns, one row per variant (failed ones too)."""

    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    _best: dict[str, Value] = field(default_factory=dict, compare=False, repr=False)  # by column key, once

    def value(self, row: Row, column: Column) -> Value:
        """The rounded value of one cell."""
        return row.values[self.columns.index(column)]

    def text(self, row: Row, column: Column) -> str:
        """One cell as every table prints it."""
        return column.text(column.shown(self.value(row, column)))

    def best(self, column: Column) -> Value:
        """The best value of a column among the variants that compete for it (None when none does)."""
        if column.key not in self._best:
            self._best[column.key] = self._find_best(column)
        return self._best[column.key]

    def _find_best(self, column: Column) -> Value:
        values = [self.value(r, column) for r in self.rows if self._competes(r, column)]
        numbers_ = [cast(float, v) for v in values if not _missing(v)]
        if column.better is Better.NONE or not numbers_:
            return None
        return max(numbers_) if column.better is Better.HIGHER else min(numbers_)

    @staticmethod
    def _competes(row: Row, column: Column) -> bool:
        """False for failed and warned variants, and for float32 in the columns that compare with it."""
        return row.ok and not row.warned and not (column.against_float32 and row.is_float32)

    def is_best(self, row: Row, column: Column) -> bool:
        """True when this cell holds its column's best value among the variants that compete (ties are all best)."""
        if not self._competes(row, column):
            return False
        best = self.best(column)
        return best is not None and self.value(row, column) == best


def _applies(column: Column, result: CompareResult) -> bool:
    """True when the column says something for this result."""
    if Needs.LABELS in column.needs and not result.labelled:
        return False
    if Needs.TOP5 in column.needs and not result.has_top5:
        return False
    if Needs.BENEATH in column.needs:
        return False
    return Needs.A_VALUE not in column.needs or any(column.value(v) for v in result.variants)


def summarize(result: CompareResult, *, every_column: bool = False) -> Summary:
    """The summary of a comparison.

    Args:
        result: the comparison.
        every_column: keep columns that say nothing for this result (the CSV does, so that
            scripts can rely on its header for a task); tables leave them out.
    """
    columns = tuple(c for c in task_columns(result) if every_column or _applies(c, result))
    baseline = result.baseline
    rows = tuple(Row(name=v.name, ok=v.ok, is_float32=v is baseline, warned=bool(v.warning),
                     values=tuple(c.cell(v) for c in columns))
                 for v in result.variants)
    return Summary(columns=columns, rows=rows)


def failure_lines(result: CompareResult) -> tuple[str, ...]:
    """One line per failed variant with its whole reason: what every table prints beneath (or above) itself."""
    return tuple(f"{v.name} failed: {v.error or 'no reason given'}" for v in result.variants if not v.ok)


def prediction_lines(predictions: Sequence[Prediction], *, true_index: int | None = None) -> tuple[str, ...]:
    """One image's top classes as shown, "label: 0.123" each (✓ on the true class).

    A class at probability exactly 0 is not ranked: an int8 softmax rounds every small
    probability to 0, and a top-5 padded with the first classes of the label list ("tench:
    0.000") reads as a prediction. Those are left out and one "(others 0)" says so; a
    probability that is not 0 but rounds to 0.000 shows as "<0.001".
    """
    lines = []
    for p in predictions:
        if p.prob > 0:
            mark = " ✓" if true_index is not None and p.index == true_index else ""
            lines.append(f"{p.label}: {p.prob:.3f}{mark}" if p.prob >= 0.0005 else f"{p.label}: <0.001{mark}")
    if len(lines) < len(predictions):
        lines.append("(others 0)")
    return tuple(lines)


def markdown_table(result: CompareResult) -> str:
    """The summary as a Markdown table (the README's sample results): the app's columns, best values in bold.

    Failed variants' reasons follow the table, one line each.
    """
    table = summarize(result)
    align = {Unit.TEXT: "---", Unit.YES_NO: ":---:"}

    def cell(row: Row, column: Column) -> str:
        text = table.text(row, column).replace("|", "\\|")
        return f"**{text}**" if table.is_best(row, column) else text

    lines = ["| " + " | ".join(c.title.replace("|", "\\|") for c in table.columns) + " |",
             "|" + "|".join(align.get(c.unit, "---:") for c in table.columns) + "|"]
    lines += ["| " + " | ".join(cell(r, c) for c in table.columns) + " |" for r in table.rows]
    lines += [f"\n{line}" for line in failure_lines(result)]
    return "\n".join(lines) + "\n"

"""The per-variant summary: one column spec behind the CSV, the CLI table, the app table and the HTML report.

Every number is rounded once, by `rounded` with its column's `digits`, when the summary is
built; the CSV writes that number and every table shows it through `Column.text`, so no two
views can disagree on a value or on which one is best.
"""

from __future__ import annotations

import enum
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import cast

from quant_core.results.compare_result import CompareResult, Prediction, VariantResult

Value = int | float | str | bool | None
MISSING = "–"  # a number that was not measured (failed variant, latency off, no labels)


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
            scripts can rely on its header); tables leave them out.
    """
    columns = tuple(c for c in COLUMNS if every_column or _applies(c, result))
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

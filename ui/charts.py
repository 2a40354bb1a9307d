"""Plotly figures and tables built from a CompareResult (used by the pages and the HTML report)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
import statistics
import textwrap
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import cast

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from pandas.io.formats.style import Styler

from quant_core import CompareResult
from quant_core.layers import LayerReport, layer_name, percent
from quant_core.ops import OpKind
from quant_core.recipe import CalibrationSource
from quant_core.results.summary import (ACCURACY, AGREEMENT, MAP_50, MEAN_ABS_DIFF, MEDIAN_MS, MEMORY, MISSING, P90_MS,
                                        SIZE, STATUS, TRUTH_SCORE, VARIANT, X_SMALLER, Column, Summary,
                                        agreement_column, summarize, worst_output, worst_words)
from quant_core.tasks import Task
from quant_core.tune import CLASS_AGREEMENT, CalibrationSweep, Objective, Step
from ui.per_result import remembered

_FONT = {"family": "Inter, Segoe UI, sans-serif", "size": 13}
BEST_STYLE = "background-color: rgba(33, 195, 84, 0.25); font-weight: 600"
MAX_CONFUSION_CLASSES = 12  # beyond this a confusion matrix is unreadable; list the mistakes instead


def ok_variants(result: CompareResult):
    """The variants that were built and passed their checks."""
    return [v for v in result.variants if v.ok]


def coarseness_note(images: int) -> str:
    """A sentence on how coarse accuracy is on few images ('' from 100 images on)."""
    if not images or images >= 100:
        return ""
    return (f"With {images} images one image is {100 / images:.1f} points of accuracy: agreement and mean |Δp| "
            "are the finer signals. ")


def summary_frame(result: CompareResult) -> pd.DataFrame:
    """One row per variant, one column per summary column that applies (failed variants keep their error).

    Numbers are the summary's rounded values in the unit shown (KB for sizes, fractions for
    percentages); `styled_summary` prints them.
    """
    return _frame(summarize(result))


def _frame(table: Summary) -> pd.DataFrame:
    return pd.DataFrame([[c.shown(table.value(r, c)) for c in table.columns] for r in table.rows],
                        columns=[c.title for c in table.columns])


def styled_summary(result: CompareResult) -> Styler:
    """The summary table, printed as every other view prints it, with the best value of each column highlighted."""
    table = summarize(result)
    frame = _frame(table)
    best = pd.DataFrame([[BEST_STYLE if table.is_best(r, c) else "" for c in table.columns] for r in table.rows],
                        index=frame.index, columns=frame.columns)
    return frame.style.format({c.title: c.text for c in table.columns}).apply(lambda _: best, axis=None)


def summary_column_help(result: CompareResult) -> dict[str, str]:
    """Column title -> its one-line explanation, for the summary columns this result shows (st.column_config help)."""
    return {c.title: c.explain for c in summarize(result).columns}


def _layout(fig: go.Figure, title: str, **kwargs) -> go.Figure:
    kwargs.setdefault("height", 360)
    kwargs.setdefault("showlegend", False)
    kwargs.setdefault("margin", {"l": 40, "r": 20, "t": 50, "b": 40})
    fig.update_layout(title=title, font=_FONT, **kwargs)
    return fig


# Direct labels are laid out in pixels of a nominal plot area, PLOT_WIDTH wide: the narrowest the page gives the
# chart. Both ends of each leader line are data coordinates, so a wider plot only stretches the layout sideways:
# boxes that were apart stay apart, markers stay out from under them, leader lines stay uncrossed and get no nearer
# any marker (the layout fixes the height).
PLOT_WIDTH = 380  # px: the narrowest plot area labels are laid out for (half of a laptop-wide page)
FIDELITY_HEIGHT = 440  # px: the whole figure
MARGIN = {"l": 60, "r": 20, "t": 70, "b": 50}
LABEL_FONT = 12
LABEL_CHAR_PX = 7.2  # a generous average glyph width at LABEL_FONT: estimated boxes err on the wide side
LABEL_HEIGHT = 18  # px: 12 px text and the box's padding
LABEL_GAP = 10  # from a point's centre to its label's near edge
MARKER_RADIUS = 6
SHIFT_STEP = 10  # px between the spots tried for a label that does not fit beside its point
MAX_SHIFT = 120  # px: the farthest a label's near edge moves sideways from beside its point
MAX_ROWS = 16  # steps of SHIFT_STEP tried up and down
# Markers that still overlap on a plot MAX_STRETCH PLOT_WIDTHs wide (a half page on a 1920 px screen) are one blob:
# its leader lines may leave it over each other's markers.
MAX_STRETCH = 2
LEFT_COST = 15  # px of leader line worth keeping a label right of its point, where it is read first
ASTRAY_COST = 60  # px of leader line worth keeping a label's leader end nearer its own point than any other
# The layout is searched in stages, each with (spots per label, leader lines clear of markers, pairs of spots
# compared at most): a label's nearest spots solve most layouts quickly; a blob of markers too tight for any line to
# leave without passing one lets lines pass markers; an unsolved layout keeps each label's first free spot.
_STAGES = ((80, True, 20_000), (None, True, 60_000), (None, False, 60_000))
CRAMPED = 20  # a point with this few spots left is labelled next, before it loses them to its neighbours
Y_TOP = 1.05  # the fidelity axis shows 0 to 100 %, with room for the labels of points at 100 %
BAR_MARGIN = {"l": 110, "r": 20, "t": 50, "b": 40}  # room on the left for the variant names
BAR_PLOT_WIDTH = PLOT_WIDTH + MARGIN["l"] - BAR_MARGIN["l"]  # px: a bar chart's plot area in the same width
LATENCY_GAP = 4  # px from a whisker's end to its bar's label
CLIP_FACTOR = 10  # a variant this many times slower than the typical one gets a cut bar on the latency chart
_BLUE, _DARK, _GREY, _TEAL, _ORANGE = "#4C78A8", "#333333", "#9E9E9E", "#72B7B2", "#F58518"

Pixel = tuple[float, float]


@dataclass(frozen=True)
class LabelBox:
    """A direct label's box in pixels of the plot area (x to the right, y down from the top)."""

    name: str
    x0: float
    y0: float
    x1: float
    y1: float

    def overlaps(self, other: LabelBox) -> bool:
        """True when the two boxes share any area."""
        return self.x0 < other.x1 and other.x0 < self.x1 and self.y0 < other.y1 and other.y0 < self.y1


@dataclass(frozen=True)
class Label:
    """A direct label: its box and its leader line, from its point to the middle of the box's near side (px)."""

    box: LabelBox
    point: Pixel
    tail: Pixel

    @property
    def right(self) -> bool:
        """True when the label is right of its point (its box's left edge is the leader line's end)."""
        return self.tail[0] > self.point[0]

    @cached_property
    def extent(self) -> LabelBox:
        """The smallest box holding the label and its leader line."""
        b, (px, py) = self.box, self.point
        return LabelBox(b.name, min(b.x0, px), min(b.y0, py), max(b.x1, px), max(b.y1, py))


def label_width(text: str) -> float:
    """Estimated width in pixels of a label at LABEL_FONT, padding included."""
    return len(text) * LABEL_CHAR_PX + 6


def _axis_end(values: list[float], widths: list[float], *, gap: float, plot_width: float = PLOT_WIDTH) -> float:
    """The axis end that leaves `width` px for a label `gap` px right of each value, on a `plot_width` plot."""
    return max((v * plot_width / max(plot_width - gap - w, plot_width / 4) for v, w in zip(values, widths)),
               default=1.0)


def place_labels(points: list[tuple[str, float, float]], texts: list[str], *, plot_height: float) -> list[Label]:
    """A label for each point (name, x px, y px): beside it when that spot is free, else the nearest free spot.

    Free: inside the plot, over no other label and no marker, and joined to its point by a leader line that
    passes no other marker (markers overlapping its own aside) and crosses no other label or leader line. Points
    are labelled from the top down, right to left along a row (so that lines fanning out of a cluster nest), a
    cramped point first, each taking its nearest spot that leaves every other point one (`_STAGES`).
    """
    return list(_placed(tuple(points), tuple(texts), plot_height))


@lru_cache(maxsize=32)
def _placed(points: tuple[tuple[str, float, float], ...], texts: tuple[str, ...],
            plot_height: float) -> tuple[Label, ...]:
    """`place_labels`, remembered: the page draws the same chart again on every rerun."""
    markers = [(x, y) for _, x, y in points]
    order = sorted(range(len(points)), key=lambda k: (points[k][2], -points[k][1]))
    for limit, strict, budget in _STAGES:
        options = {k: _spots(points[k], label_width(texts[k]), markers, plot_height, limit=limit, strict=strict)
                   or [_beside(points[k], texts[k])] for k in order}
        placed: dict[int, Label] = {}
        if _search(options, placed, [budget]):
            return tuple(placed[k] for k in range(len(points)))
    placed = {}
    for k in order:
        placed[k] = next((s for s in options[k] if all(_apart(s, p) for p in placed.values())), options[k][0])
    return tuple(placed[k] for k in range(len(points)))


def _beside(point: tuple[str, float, float], text: str) -> Label:
    """The label right of its point, on its row."""
    name, px, py = point
    x0 = px + LABEL_GAP
    return Label(LabelBox(name, x0, py - LABEL_HEIGHT / 2, x0 + label_width(text), py + LABEL_HEIGHT / 2), (px, py),
                 (x0, py))


def _shifts() -> list[tuple[float, int, int, int]]:
    """(cost, dx, dy, side) of every spot tried for a label, cheapest first, up before down, right before left."""
    shifts = [(math.hypot(dx, dy) + LEFT_COST * (side < 0), dx, dy, side)
              for dx in range(0, MAX_SHIFT + 1, SHIFT_STEP)
              for dy in range(-MAX_ROWS * SHIFT_STEP, MAX_ROWS * SHIFT_STEP + 1, SHIFT_STEP) for side in (1, -1)]
    return sorted(shifts, key=lambda s: s[0])


_SHIFTS = _shifts()


def _spots(point: tuple[str, float, float], width: float, markers: list[Pixel], plot_height: float, *,
           limit: int | None, strict: bool) -> list[Label]:
    """The first `limit` free spots for a label, cheapest first: inside the plot, over no marker, and (if `strict`)
    with a leader line that passes no marker."""
    name, px, py = point
    others = [m for m in markers if m != (px, py)]
    costed = []
    for cost, dx, dy, side in _SHIFTS:
        tail = (px + side * (LABEL_GAP + dx), py + dy)
        x0 = tail[0] if side > 0 else tail[0] - width
        if x0 >= -0.5 and x0 + width <= PLOT_WIDTH + 0.5 and 0 <= tail[1] <= plot_height - LABEL_HEIGHT / 2:
            astray = any(math.dist(tail, m) < math.hypot(LABEL_GAP + dx, dy) for m in others)
            costed.append((cost + ASTRAY_COST * astray, tail, x0))
    costed.sort(key=lambda c: c[0])
    labels = (Label(LabelBox(name, x0, tail[1] - LABEL_HEIGHT / 2, x0 + width, tail[1] + LABEL_HEIGHT / 2),
                    (px, py), tail) for _, tail, x0 in costed)
    return list(itertools.islice((label for label in labels if _clear(label, others, strict=strict)), limit))


def _clear(label: Label, markers: list[Pixel], *, strict: bool = True) -> bool:
    """True when none of `markers` is under the label, nor (if `strict`) under its leader line (`_passes`)."""
    b, r = label.box, MARKER_RADIUS
    near = label.extent  # a marker further than its radius beyond the line's ends is clear of it at any width
    for mx, my in markers:
        if b.x0 - r < mx < b.x1 + r and b.y0 - r < my < b.y1 + r:
            return False
        if strict and near.x0 - r - 1 < mx < near.x1 + r + 1 and near.y0 - r - 1 < my < near.y1 + r + 1 \
                and _passes(label, (mx, my)):
            return False
    return True


def _passes(label: Label, marker: Pixel) -> bool:
    """True when the leader line runs over a marker that does not overlap its own, on this plot or a wider one.

    Stretching moves the line no nearer any marker, so the test is made at the narrowest width at which the
    marker stops overlapping the label's own, if that is at most MAX_STRETCH times PLOT_WIDTH.
    """
    (px, py), (mx, my) = label.point, marker
    dx, dy, r = abs(mx - px), abs(my - py), MARKER_RADIUS
    s = 1.0 if math.hypot(dx, dy) >= 2 * r else math.sqrt(4 * r * r - dy * dy) / dx if dx else math.inf
    return s <= MAX_STRETCH and _distance((mx * s, my), (px * s, py), (label.tail[0] * s, label.tail[1])) <= r + 1


def _apart(a: Label, b: Label) -> bool:
    """True when two labels and their leader lines neither overlap nor cross."""
    return not a.extent.overlaps(b.extent) or not (a.box.overlaps(b.box) or crosses(a.point, a.tail, b.point, b.tail)
                or cuts(a.point, a.tail, b.box) or cuts(b.point, b.tail, a.box))


def _search(spots: dict[int, list[Label]], placed: dict[int, Label], budget: list[int]) -> bool:
    """Depth first: the next point (in `spots` order, a cramped one first) takes its first spot that leaves every
    other point a spot apart from it, until all are placed or `budget` pairs of spots have been compared."""
    if not spots:
        return True
    k = min(spots, key=lambda j: len(spots[j]) > CRAMPED)  # min keeps the first of equals
    later = [j for j in spots if j != k]
    for spot in spots[k]:
        budget[0] -= sum(len(spots[j]) for j in later)
        if budget[0] < 0:
            return False
        left = {j: [s for s in spots[j] if _apart(spot, s)] for j in later}
        if all(left.values()):
            placed[k] = spot
            if _search(left, placed, budget):
                return True
            del placed[k]
    return False


def _turn(a: Pixel, b: Pixel, c: Pixel) -> float:
    return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])


def crosses(a: Pixel, b: Pixel, c: Pixel, d: Pixel) -> bool:
    """True when segments ab and cd cross (touching at an end, as two lines from one point do, is not crossing)."""
    return _turn(c, d, a) * _turn(c, d, b) < 0 and _turn(a, b, c) * _turn(a, b, d) < 0


def cuts(a: Pixel, b: Pixel, box: LabelBox) -> bool:
    """True when segment ab runs through the inside of `box` (Liang-Barsky clipping)."""
    t0, t1 = 0.0, 1.0
    dx, dy = b[0] - a[0], b[1] - a[1]
    for p, q in ((-dx, a[0] - box.x0), (dx, box.x1 - a[0]), (-dy, a[1] - box.y0), (dy, box.y1 - a[1])):
        if p == 0:
            if q <= 0:
                return False
        elif p < 0:
            t0 = max(t0, q / p)
        else:
            t1 = min(t1, q / p)
    return t0 < t1


def _distance(p: Pixel, a: Pixel, b: Pixel) -> float:
    """Distance from p to the segment ab."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    t = max(0.0, min(1.0, ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / (dx * dx + dy * dy or 1.0)))
    return math.dist(p, (a[0] + t * dx, a[1] + t * dy))


def _explained(column: Column, *, title: bool = False) -> str:
    """A column's explanation as hover lines in italics (plotly's hover has no wrapping of its own)."""
    text = f"{column.title}: {column.explain}" if title else column.explain
    return "<br>".join(f"<i>{line}</i>" for line in textwrap.wrap(text, 60))


def _unit(byte_counts: list[int]) -> tuple[str, int]:
    """MB when the largest count is at least 1 MB, else KB (1,024 bytes, as in the table), and its size."""
    return ("MB", 1024 * 1024) if max(byte_counts, default=0) >= 1024 * 1024 else ("KB", 1024)


def _of_images(share: float, images: int) -> str:
    return f"{round(share * images)} of {images} images"


def _fidelity_hover(result: CompareResult, v) -> str:
    """One point's numbers in plain words, formatted as the summary table formats them."""
    n = len(result.images)
    lines = [f"<b>{v.name}</b>" + (f"<br>warning: {v.warning}" if v.warning else ""),
             f"{SIZE.format_number(v.size_bytes)} KB file"
             + (f", {X_SMALLER.format_number(1 / v.size_ratio)} smaller than float32"
                if v.size_ratio and v is not result.baseline else "")]
    if result.task is not Task.CLASSIFICATION:
        return "<br>".join(lines + _task_hover(result, v)) + "<br>" + _explained(_fidelity_column(result), title=True)
    if result.labelled and v.accuracy is not None:
        lines.append(f"right on {_of_images(v.accuracy, n)} ({ACCURACY.format_number(v.accuracy)} accuracy)")
    if v is not result.baseline and v.top1_agreement is not None:
        lines.append(f"same top-1 class as float32 on {_of_images(v.top1_agreement, n)} "
                     f"({AGREEMENT.format_number(v.top1_agreement)} agreement)")
    if v is not result.baseline and v.mean_abs_diff is not None:
        lines.append(f"largest class-probability change: {100 * v.mean_abs_diff:.2f} points per image on average "
                     f"(mean |Δp| {MEAN_ABS_DIFF.format_number(v.mean_abs_diff)})")
    column = ACCURACY if result.labelled else AGREEMENT
    return "<br>".join(lines) + "<br>" + _explained(column, title=True)


def _fidelity_column(result: CompareResult) -> Column:
    """What the fidelity chart plots: accuracy (labels or ground truth) when known, else the task's agreement."""
    if result.task is Task.CLASSIFICATION:
        return ACCURACY if result.labelled else AGREEMENT
    if result.labelled:
        return MAP_50 if result.task is Task.DETECTION else TRUTH_SCORE
    return agreement_column(result.task)


def _task_hover(result: CompareResult, v) -> list[str]:
    """A non-classifier's point: agreement in the task's measure, score against ground truth, worst output."""
    lines = []
    if v is not result.baseline and v.top1_agreement is not None:
        column = agreement_column(result.task)
        lines.append(f"{column.title} with float32: {column.format_number(v.top1_agreement)}")
    if result.labelled and v.accuracy is not None:
        lines.append(f"against the ground truth: {TRUTH_SCORE.format_number(v.accuracy)}")
    worst = worst_output(v)
    if v is not result.baseline and worst is not None and worst.whole.sqnr_db is not None:
        lines.append(f"lowest SQNR {worst.whole.sqnr_db:.1f} dB: {worst_words(worst)}")
    return lines


def _note(fig: go.Figure, text: str) -> go.Figure:
    fig.add_annotation(text=text, xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False)
    return fig


@remembered
def fidelity_chart(result: CompareResult) -> go.Figure:
    """File size against fidelity (accuracy with labels, else top-1 agreement with float32), both axes from 0.

    One marker per built variant, named beside it or joined to it by a leader line that crosses no other
    (`place_labels`); float32's value
    is a dashed reference line; variants with a warning are hollow and grey, and their label says so.
    """
    column = _fidelity_column(result)
    vs = [v for v in ok_variants(result) if column.value(v) is not None and v.size_bytes]
    title = "File size vs " + {AGREEMENT.key: "agreement with float32", TRUTH_SCORE.key: "ground truth"}.get(
        column.key, column.title)
    if not vs:
        return _layout(_note(go.Figure(), f"no built variant has {column.title} to show"),
                       title, height=FIDELITY_HEIGHT)
    unit, scale = _unit([v.size_bytes for v in vs])
    base = result.baseline
    xs = [v.size_bytes / scale for v in vs]
    ys = [float(cast(float, column.value(v))) for v in vs]
    texts = [f"float32: {column.format_number(y)}" if v is base else v.name + " (warning)" * bool(v.warning)
             for v, y in zip(vs, ys)]
    x_end = max(max(xs) * 1.08, _axis_end(xs, [label_width(t) for t in texts], gap=LABEL_GAP))
    plot_height = FIDELITY_HEIGHT - MARGIN["t"] - MARGIN["b"]
    pixels = [(v.name, x / x_end * PLOT_WIDTH, (1 - y / Y_TOP) * plot_height) for v, x, y in zip(vs, xs, ys)]
    labels = place_labels(pixels, texts, plot_height=plot_height)
    fig = go.Figure()
    if base is not None:
        y = float(cast(float, column.value(base)))
        fig.add_shape(type="line", x0=0, x1=x_end, y0=y, y1=y, layer="below", name="float32 reference",
                      line={"color": _DARK, "dash": "dash", "width": 1})
    colours = [_GREY if v.warning else _DARK if v is base else _BLUE for v in vs]
    fig.add_scatter(x=xs, y=ys, mode="markers", hovertext=[_fidelity_hover(result, v) for v in vs],
                    hovertemplate="%{hovertext}<extra></extra>",
                    marker={"size": 2 * MARKER_RADIUS, "color": colours, "line": {"color": colours, "width": 2},
                            "symbol": ["circle-open" if v.warning else "circle" for v in vs]})
    for v, x, y, text, label in zip(vs, xs, ys, texts, labels):  # the leader line's far end in data coordinates
        fig.add_annotation(x=x, y=y, text=text, xanchor="left" if label.right else "right", yanchor="middle",
                           axref="x", ayref="y", ax=label.tail[0] / PLOT_WIDTH * x_end,
                           ay=(1 - label.tail[1] / plot_height) * Y_TOP, showarrow=True, arrowhead=0, arrowwidth=1,
                           arrowcolor=_GREY, standoff=MARKER_RADIUS, bgcolor="rgba(255, 255, 255, 0.85)",
                           font={"size": LABEL_FONT, "color": _GREY if v.warning else _DARK})
    return _layout(fig, title, height=FIDELITY_HEIGHT, margin=MARGIN,
                   xaxis={"title": f"file size ({unit})", "range": [0, x_end], "type": "linear"},
                   yaxis={"title": column.title, "range": [0, Y_TOP], "tickformat": ".0%", "type": "linear",
                          "tickvals": [0, 0.2, 0.4, 0.6, 0.8, 1.0]})


def _bars(names: list[str], values: list[float], texts: list[str], hover: list[str], colour: str) -> go.Figure:
    """Horizontal bars in the result's order (float32 on top), each labelled just past its end."""
    return go.Figure(go.Bar(y=names, x=values, orientation="h", text=texts, textposition="outside",
                            cliponaxis=False, marker_color=colour, hovertext=hover,
                            hovertemplate="%{hovertext}<extra></extra>"))


def _bar_layout(fig: go.Figure, title: str, unit: str, values: list[float], texts: list[str]) -> go.Figure:
    """A linear axis from 0 with room for the bar labels, variants top to bottom."""
    x_end = max(max(values, default=1.0) * 1.05,
                _axis_end(values, [label_width(t) for t in texts], gap=4, plot_width=BAR_PLOT_WIDTH))
    return _layout(fig, title, height=max(300, 110 + 30 * len(values)), margin=BAR_MARGIN,
                   xaxis={"title": unit, "range": [0, x_end], "type": "linear"}, yaxis={"autorange": "reversed"})


@remembered
def size_chart(result: CompareResult) -> go.Figure:
    """File size per variant, labelled with how many times smaller than float32 it is; axis from 0."""
    vs = [v for v in ok_variants(result) if v.size_bytes]
    unit, scale = _unit([v.size_bytes for v in vs])
    sizes = [v.size_bytes / scale for v in vs]
    texts = [f"{s:,.1f} {unit}" + (f" · {X_SMALLER.format_number(1 / v.size_ratio)} smaller"
                                   if v.size_ratio and v.size_ratio < 1 else "") for v, s in zip(vs, sizes)]
    hover = [f"<b>{v.name}</b>: {SIZE.format_number(v.size_bytes)} KB file<br>{_explained(SIZE)}"
             for v in vs]
    fig = _bars([v.name for v in vs], sizes, texts, hover, _BLUE)
    return _bar_layout(fig, f"File size ({unit})", unit, sizes, texts)


def _versus(value: float, reference: float | None) -> str:
    """How a memory figure compares with float32's, in words."""
    if not reference or abs(value / reference - 1) < 0.05:
        return ""
    ratio = value / reference
    return f" · {ratio:.1f}x float32's" if ratio > 1 else f" · {1 / ratio:.1f}x less than float32"


@remembered
def memory_chart(result: CompareResult) -> go.Figure:
    """Heap the interpreter holds while running one image, per variant (the summary's memory column); axis from 0."""
    vs = [v for v in ok_variants(result) if v.memory is not None]
    title = "Memory while running (heap, not the file)"
    if not vs:
        return _note(_layout(go.Figure(), title), "memory was not measured (it needs glibc's allocator counters)")
    unit, scale = _unit([v.memory.runtime_bytes for v in vs])
    base = result.baseline
    reference = base.memory.runtime_bytes if base is not None and base.memory is not None else None
    heap = [v.memory.runtime_bytes / scale for v in vs]
    texts = [f"{h:,.1f} {unit}" + ("" if v is base else _versus(v.memory.runtime_bytes, reference))
             for v, h in zip(vs, heap)]
    hover = [f"<b>{v.name}</b>: {MEMORY.format_number(v.memory.runtime_bytes)} KB heap while running<br>"
             + _explained(MEMORY) for v in vs]
    fig = _bars([v.name for v in vs], heap, texts, hover, _TEAL)
    return _bar_layout(fig, f"{title} ({unit})", unit, heap, texts)


def ms_text(ms: float) -> str:
    """A latency as a bar label: 264 ms, 10.1 ms, 0.14 ms, 0.065 ms (never scientific notation)."""
    decimals = 0 if ms >= 100 else 1 if ms >= 1 or ms <= 0 else 1 - math.floor(math.log10(ms))
    return f"{ms:,.{decimals}f} ms"


@remembered
def latency_chart(result: CompareResult) -> go.Figure:
    """Median latency per variant, fastest on top, on a linear axis from 0; the whisker reaches the p90.

    Each median is written just past its whisker's end, where no whisker strikes it through. A variant more
    than CLIP_FACTOR times slower than the typical (median) variant would squash every other bar: the axis stops
    at three times the slowest of the others and that bar is cut at the edge, labelled inside with its real
    median ("264 ms →"), and the subtitle says so.
    """
    threads = result.environment.threads
    title = f"Latency per image (ms, {threads} thread{'s' * (threads > 1)}, this CPU)"
    vs = sorted((v for v in ok_variants(result) if v.latency), key=lambda v: v.latency.median_ms)
    if not vs:
        return _note(_layout(go.Figure(), title), "latency was not measured")
    typical = statistics.median(v.latency.median_ms for v in vs)
    cut = {v.name for v in vs if typical > 0 and v.latency.median_ms > CLIP_FACTOR * typical}
    kept = [v for v in vs if v.name not in cut]
    texts = [ms_text(v.latency.median_ms) for v in kept]
    p90 = [v.latency.p90_ms for v in kept]
    room = _axis_end(p90, [label_width(t) for t in texts], gap=LATENCY_GAP, plot_width=BAR_PLOT_WIDTH)
    x_end = max(3 * max(v.latency.median_ms for v in kept), 1.1 * max(p90), room) if cut else max(1.05 * max(p90), room)
    slow = [v for v in vs if v.name in cut]
    fig = go.Figure(_latency_bars(kept, [v.latency.median_ms for v in kept], None))
    fig.data[0].update(error_x={"type": "data", "symmetric": False, "color": _DARK, "width": 4,
                                "arrayminus": [0] * len(kept),
                                "array": [v.latency.p90_ms - v.latency.median_ms for v in kept]})
    note = "bar: median; whisker: p90"
    if slow:  # drawn to the axis edge, hatched, without a whisker
        fig.add_trace(_latency_bars(slow, [x_end] * len(slow), [ms_text(v.latency.median_ms) + " →" for v in slow]))
        fig.data[1].update(textposition="inside", insidetextanchor="end", marker_pattern_shape="/")
        note += "".join(f"<br>{v.name}'s bar is cut at the edge: {ms_text(v.latency.median_ms)}, "
                        f"{v.latency.median_ms / typical:.0f}x the typical variant" for v in slow)
    fig.add_scatter(y=[v.name for v in kept], x=p90, text=texts, mode="markers+text", textposition="middle right",
                    marker={"size": 2 * LATENCY_GAP, "opacity": 0}, name="median", cliponaxis=False,
                    hoverinfo="skip", textfont={"size": LABEL_FONT, "color": _DARK})  # the marker: a gap
    return _layout(fig, f"{title}<br><sup>{note}</sup>", margin=BAR_MARGIN | {"t": 70 + 24 * len(slow)},
                   height=max(360, 120 + 30 * len(vs)) + 24 * len(slow),
                   xaxis={"title": "ms", "range": [0, x_end], "type": "linear"},
                   yaxis={"autorange": "reversed"}, barmode="overlay")


def _latency_bars(vs, x: list[float], text: list[str] | None) -> go.Bar:
    """Horizontal latency bars with their hover text (grey for variants with a warning)."""
    return go.Bar(y=[v.name for v in vs], x=x, text=text, orientation="h",
                  marker_color=[_GREY if v.warning else _ORANGE for v in vs],
                  hovertemplate="%{hovertext}<extra></extra>",
                  hovertext=[f"<b>{v.name}</b>: median {MEDIAN_MS.format_number(v.latency.median_ms)} ms, p90 "
                             f"{P90_MS.format_number(v.latency.p90_ms)} ms<br>{_explained(MEDIAN_MS)}"
                             for v in vs])


def confusion_classes(result: CompareResult, name: str) -> list[int]:
    """Class indices that occur as a true label or as this variant's prediction (the rest are all zero)."""
    used = {i.label_index for i in result.images} | set(result.variant(name).top1)
    return sorted(c for c in used if c is not None)


def confusion_counts(result: CompareResult, name: str) -> np.ndarray:
    """[true class, predicted class] image counts of one variant, over `confusion_classes` only."""
    classes = confusion_classes(result, name)
    position = {c: k for k, c in enumerate(classes)}
    matrix = np.zeros((len(classes), len(classes)), dtype=int)
    for image, pred in zip(result.images, result.variant(name).top1):
        if image.label_index is not None:  # shown for labelled results only
            matrix[position[image.label_index], position[pred]] += 1
    return matrix


@remembered
def confusion_chart(result: CompareResult, name: str) -> go.Figure:
    """Confusion matrix of one variant as a heatmap (for the HTML report)."""
    matrix = confusion_counts(result, name)
    names = [result.class_names[c] for c in confusion_classes(result, name)]
    fig = go.Figure(go.Heatmap(z=matrix, x=names, y=names, colorscale="Blues", text=matrix,
                               texttemplate="%{text}", showscale=False))
    return _layout(fig, f"Confusion matrix: {name}", xaxis_title="predicted", yaxis_title="true",
                   yaxis_autorange="reversed", height=420)


def mistakes_frame(result: CompareResult, name: str) -> pd.DataFrame:
    """The images one variant gets wrong: true class, its prediction, and float32's (many-class models)."""
    v = result.variant(name)
    base = result.baseline
    rows = []
    for k, image in enumerate(result.images):
        if image.label_index is None or v.top1[k] == image.label_index:
            continue
        top = v.topk[k][0]
        rank = next((r + 1 for r, p in enumerate(v.topk[k]) if p.index == image.label_index and p.prob > 0), None)
        rows.append({"image": image.file.split("/")[-1], "true class": image.label,
                     f"{name} predicts": f"{top.label} ({top.prob:.2f})",
                     "true class rank": f"#{rank}" if rank else f"not in top {len(v.topk[k])}",
                     "float32 predicts": "–" if base is None else base.topk[k][0].label})
    return pd.DataFrame(rows)


def confusion_table(result: CompareResult, name: str) -> Styler:
    """Confusion matrix of one variant as a shaded table: rows true class, columns predicted.

    A table, not a chart, on the page: switching variants re-rendered in 0.37 s median instead
    of 0.67 s with the Plotly heatmap (bench/bench_browser.py, bench/README.md).
    """
    matrix = confusion_counts(result, name)
    names = [result.class_names[c] for c in confusion_classes(result, name)]
    frame = pd.DataFrame(matrix, index=pd.Index(names, name="true \\ predicted"), columns=names)
    top = max(int(matrix.max()), 1)

    def shade(values: pd.DataFrame) -> pd.DataFrame:
        styles = pd.DataFrame("", index=values.index, columns=values.columns)
        for i in range(len(names)):
            for j in range(len(names)):
                count = int(values.iat[i, j])
                colour = "46, 111, 216" if i == j else "228, 87, 86"  # right: blue, wrong: red
                styles.iat[i, j] = f"background-color: rgba({colour}, {0.08 + 0.6 * count / top:.2f})" if count \
                    else "color: #bbb"
        return styles

    return frame.style.apply(shade, axis=None)


@remembered
def ops_chart(result: CompareResult) -> go.Figure:
    """Ops per compute kind, stacked, per variant."""
    vs = [v for v in ok_variants(result) if v.ops]
    colours = {OpKind.INT8: "#54A24B", OpKind.INT16: "#72B7B2", OpKind.HYBRID: "#EECA3B", OpKind.FLOAT: "#E45756",
               OpKind.QUANTIZE: "#9D755D", OpKind.DEQUANTIZE: "#BAB0AC", OpKind.INDEX: "#79706E"}
    fig = go.Figure()
    for kind in OpKind:
        fig.add_bar(name=kind.value, x=[v.name for v in vs], y=[v.ops.of(kind) for v in vs],
                    marker_color=colours[kind])
    return _layout(fig, "Ops by compute type", barmode="stack", showlegend=True, yaxis_title="ops")


def most_disagreeing(result: CompareResult, count: int) -> list[str]:
    """float32 and the `count` variants that change float32's top-1 on the most images (ties: build order)."""
    vs = ok_variants(result)
    base = result.baseline
    if base is None:
        return [v.name for v in vs][: count + 1]
    others = [v for v in vs if v is not base]
    ranked = sorted(others, key=lambda v: -sum(a != b for a, b in zip(v.top1, base.top1)))
    return [base.name] + [v.name for v in ranked[:count]]


def disagreement(result: CompareResult) -> list[bool]:
    """Per image: True when any variant's top-1 differs from float32's."""
    vs = ok_variants(result)
    base = result.baseline
    if base is None:
        return [False] * len(result.images)
    return [any(v.top1[k] != base.top1[k] for v in vs) for k in range(len(result.images))]


def live_frame(partial: CompareResult | None, names: tuple[str, ...], *, current: str | None,
               timing: bool) -> pd.DataFrame:
    """The summary table of a running comparison, as text: measured rows, then one row per variant still to come.

    A measured variant whose latency is still to be timed says so in its status and latency
    cells; the variant being built says "building…", the others "waiting".
    """
    table = summarize(partial) if partial is not None else Summary(columns=(VARIANT, STATUS), rows=())
    columns = table.columns
    rows: list[list[str]] = []
    done: set[str] = set()
    for row in table.rows:
        done.add(row.name)
        cells = {c: table.text(row, c) for c in columns}
        if timing and row.ok and cells.get(MEDIAN_MS) == MISSING:
            cells[STATUS] = "measuring latency…"
            cells[MEDIAN_MS] = cells[P90_MS] = "…"
        rows.append([cells[c] for c in columns])
    for name in names:
        if name not in done:
            state = "building…" if name == current else "waiting"
            rows.append([name if c is VARIANT else state if c is STATUS else "" for c in columns])
    return pd.DataFrame(rows, columns=[c.title for c in columns])


def layer_error_chart(report: LayerReport, chosen: set[str]) -> go.Figure:
    """Added error per layer (bars, the chosen ones orange; below zero: noise evened out) and the accumulated error
    (line), in graph order; the numbers are the table's and the summary's (`layers.percent`)."""
    layers = report.layers
    xs = [layer.position for layer in layers]
    hover = [f"#{layer.position} {layer.op} · {layer_name(layer.tensor)}<br>adds {percent(layer.added, signed=True)}, "
             f"accumulated {percent(layer.relative_error)}<br>"
             + (f"{layer.rmse_steps:.2f} quantization steps RMS, " if layer.rmse_steps is not None
                else "kept in float, ")
             + f"max |error| {layer.max_abs_error:.3g}" for layer in layers]
    colours = [_ORANGE if layer.tensor in chosen else _GREY if layer.scale is None else _BLUE for layer in layers]
    fig = go.Figure()
    fig.add_bar(x=xs, y=[layer.added * 100 for layer in layers], marker_color=colours, name="added",
                hovertext=hover, hovertemplate="%{hovertext}<extra></extra>")
    fig.add_scatter(x=xs, y=[layer.relative_error * 100 for layer in layers], mode="lines", name="accumulated",
                    line={"color": _DARK, "width": 1.5}, hoverinfo="skip")
    fig.update_xaxes(title="layer, in graph order")
    fig.update_yaxes(title="error, % of the signal (RMS)", rangemode="tozero")
    return _layout(fig, f"{report.variant}: error by layer on {report.images} images", height=380, showlegend=True,
                   legend={"orientation": "h", "y": 1.1, "x": 1, "xanchor": "right"})


def tune_chart(steps: Sequence[Step], winner: int | None, objective: Objective) -> go.Figure:
    """The search's trail: each tried recipe's size (or latency) against its fidelity, numbered; the winner starred."""
    built = [(k, s) for k, s in enumerate(steps) if s.ok]
    latency = objective is Objective.LATENCY
    xs = [(s.latency_ms or 0.0) if latency else (s.variant.size_bytes or 0) / 2**20 for _, s in built]
    ys = [100 * s.fidelity for _, s in built]
    colours = [_ORANGE if k == winner else _BLUE if s.within_budget else _GREY for k, s in built]
    fig = go.Figure()
    fig.add_scatter(x=xs, y=ys, mode="markers+text", text=[str(k + 1) for k, _ in built], textposition="top center",
                    marker={"size": [18 if k == winner else 11 for k, _ in built], "color": colours,
                            "symbol": ["star" if k == winner else "circle" for k, _ in built]},
                    hovertext=[f"step {k + 1}: {s.name}<br>{s.why}" for k, s in built],
                    hovertemplate="%{hovertext}<extra></extra>")
    fig.update_xaxes(title="median latency (ms)" if latency else "file size (MB)", rangemode="tozero")
    measure = built[0][1].measure if built else "agreement"
    fig.update_yaxes(title=f"{built[0][1].truth} (%)" if built and built[0][1].variant.accuracy is not None else
                     f"{'agreement' if measure == CLASS_AGREEMENT else measure} with float32 (%)")
    return _layout(fig, "The search, step by step (★ the winner; grey: outside the budget)", height=360)


def calibration_chart(sweep: CalibrationSweep) -> go.Figure:
    """Fidelity against the number of calibration images (log scale), with random calibration as a dashed line."""
    real = [p for p in sweep.points if p.source is CalibrationSource.IMAGES and p.ok]
    noise = next((p for p in sweep.points if p.source is CalibrationSource.RANDOM and p.ok), None)
    fig = go.Figure()
    measure = "agreement" if sweep.measure == CLASS_AGREEMENT else sweep.measure
    for field, name, colour in (("agreement", f"{measure} with float32", _BLUE), ("accuracy", "accuracy", _ORANGE)):
        values = [getattr(p, field) for p in real]
        if all(v is None for v in values):
            continue
        fig.add_scatter(x=[p.count for p in real], y=[100 * (v or 0) for v in values], mode="lines+markers",
                        name=name, line={"color": colour})
        value = getattr(noise, field) if noise is not None else None
        if value is not None:
            fig.add_scatter(x=[real[0].count, real[-1].count] if real else [1, sweep.images],
                            y=[100 * value] * 2, mode="lines", name=f"{name}, random calibration",
                            line={"color": colour, "dash": "dash"})
    fig.update_xaxes(title="calibration images", type="log")
    fig.update_yaxes(title="%", rangemode="tozero")
    return _layout(fig, f"{sweep.mode}: how many calibration images it needs", height=340, showlegend=True,
                   legend={"orientation": "h", "y": -0.3})


def kernel_rows(result: CompareResult) -> list[dict[str, object]]:
    """Each built variant on other kernels than XNNPACK's: the builtin kernels without it, and TFLite Micro for an
    integer-only variant (agreement with float32 there, the largest output difference from XNNPACK, arena, flash)."""
    rows: list[dict[str, object]] = []
    for v in ok_variants(result):
        k = v.kernels
        if k is None:
            continue
        m = k.micro
        rows.append({
            "variant": v.name,
            "XNNPACK": v.top1_agreement,
            "builtin, no XNNPACK": k.reference_agreement,
            "largest difference": k.reference_max_diff,
            "in output steps": k.reference_max_steps,
            "TFLite Micro": None if m is None or not m.ran else m.agreement,
            "TFLM arena (KB)": None if m is None or not m.ran else (m.arena_bytes or 0) / 1024,
            "TFLM note": "" if m is None else (m.error or f"flash {m.flash_bytes / 1024:,.1f} KB"),
        })
    return rows

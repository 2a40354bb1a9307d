"""Plotly figures and tables built from a CompareResult (used by the pages and the HTML report)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from pandas.io.formats.style import Styler

from quant_core import CompareResult
from quant_core.ops import OpKind
from quant_core.summary import MEDIAN_MS, MISSING, P90_MS, STATUS, VARIANT, Summary, summarize

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


def _layout(fig: go.Figure, title: str, **kwargs) -> go.Figure:
    kwargs.setdefault("height", 360)
    kwargs.setdefault("showlegend", False)
    fig.update_layout(title=title, font=_FONT, margin={"l": 40, "r": 20, "t": 50, "b": 40}, **kwargs)
    return fig


def size_chart(result: CompareResult) -> go.Figure:
    """File size per variant."""
    vs = ok_variants(result)
    fig = go.Figure(go.Bar(x=[v.name for v in vs], y=[v.size_bytes / 1024 for v in vs],
                           text=[f"{1 / v.size_ratio:.1f}x smaller" if v.size_ratio < 1 else "" for v in vs],
                           marker_color="#4C78A8"))
    return _layout(fig, "Model size (KB)", yaxis_title="KB")


def latency_chart(result: CompareResult) -> go.Figure:
    """Median latency with the p90 as error bar."""
    vs = [v for v in ok_variants(result) if v.latency]
    fig = go.Figure(go.Bar(
        x=[v.name for v in vs], y=[v.latency.median_ms for v in vs], marker_color="#F58518",
        error_y={"type": "data", "symmetric": False, "array": [v.latency.p90_ms - v.latency.median_ms for v in vs],
                 "arrayminus": [0] * len(vs)}))
    threads = result.environment.threads
    return _layout(fig, f"Latency per image, median and p90 (ms, {threads} thread{'s' * (threads > 1)}, this CPU)",
                   yaxis_title="ms", yaxis_type="log" if _spread(vs) else "linear")


def _spread(vs) -> bool:
    values = [v.latency.median_ms for v in vs if v.latency.median_ms > 0]
    return bool(values) and max(values) / min(values) > 20


def quality_chart(result: CompareResult) -> go.Figure:
    """Top-1 agreement with float32 and, with labels, accuracy."""
    vs = ok_variants(result)
    fig = go.Figure(go.Bar(name="agreement with float32", x=[v.name for v in vs], y=[v.top1_agreement for v in vs],
                           marker_color="#54A24B"))
    if result.labelled:
        fig.add_bar(name="accuracy", x=[v.name for v in vs], y=[v.accuracy for v in vs], marker_color="#B279A2")
    low = min([v.top1_agreement for v in vs] + ([v.accuracy for v in vs] if result.labelled else []), default=0)
    return _layout(fig, "Top-1 agreement and accuracy", barmode="group", showlegend=True,
                   yaxis_range=[max(0.0, low - 0.05), 1.0])


def tradeoff_chart(result: CompareResult) -> go.Figure:
    """Size against accuracy (or agreement), marker area by latency."""
    vs = [v for v in ok_variants(result) if v.latency]
    quality = [v.accuracy if result.labelled else v.top1_agreement for v in vs]
    lat = np.array([v.latency.median_ms for v in vs]) if vs else np.zeros(0)
    sizes = 14 + 36 * (np.log1p(lat) / max(np.log1p(lat).max(), 1e-9)) if len(lat) else []
    fig = go.Figure(go.Scatter(
        x=[v.size_bytes / 1024 for v in vs], y=quality, mode="markers+text", text=[v.name for v in vs],
        textposition="top center", marker={"size": sizes, "color": "#E45756", "opacity": 0.7},
        customdata=lat, hovertemplate="%{text}<br>%{x:.1f} KB<br>%{y:.3f}<br>%{customdata:.3f} ms<extra></extra>"))
    ylabel = "accuracy" if result.labelled else "agreement with float32"
    return _layout(fig, f"Size vs {ylabel} (marker size: latency)", xaxis_title="KB", yaxis_title=ylabel)


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
        rank = next((r + 1 for r, p in enumerate(v.topk[k]) if p.index == image.label_index), None)
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


def ops_chart(result: CompareResult) -> go.Figure:
    """Ops per compute kind, stacked, per variant."""
    vs = [v for v in ok_variants(result) if v.ops]
    colours = {OpKind.INT8: "#54A24B", OpKind.INT16: "#72B7B2", OpKind.HYBRID: "#EECA3B", OpKind.FLOAT: "#E45756",
               OpKind.QUANTIZE: "#9D755D", OpKind.DEQUANTIZE: "#BAB0AC"}
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

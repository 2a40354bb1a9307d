"""Plotly figures of each output's error against float32's, for models that are not classifiers (Compare).

SQNR is in dB (higher is closer; about 6 dB per bit). An output identical to float32's has an
infinite SQNR: its bar is drawn hatched at the top of the axis and labelled "exact", never
left out, so a reader sees that the variant was measured.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import plotly.graph_objects as go

from quant_core import CompareResult
from quant_core.fidelity import OutputFidelity, TensorFidelity
from quant_core.results.compare_result import VariantResult
from quant_core.results.summary import axis_name, channel_name, channel_word
from quant_core.tasks import OutputSpec
from ui.per_result import remembered

_FONT = {"family": "Inter, Segoe UI, sans-serif", "size": 13}
# Variant colours, in the order of the compared variants (float32 is the reference, never drawn).
PALETTE = ("#4C78A8", "#F58518", "#E45756", "#72B7B2", "#54A24B", "#B279A2", "#FF9DA6", "#9D755D", "#EECA3B")
EXACT_HEADROOM = 1.15  # exact bars stand this much above the highest finite SQNR
NO_FINITE_TOP = 60.0  # dB: the axis top when every output is exact


def compared(result: CompareResult) -> list[VariantResult]:
    """The built variants other than float32, which every one is measured against."""
    return [v for v in result.variants if v.ok and v is not result.baseline and v.outputs]


def colour(result: CompareResult, name: str) -> str:
    """The colour of one compared variant, the same in every figure of the page."""
    names = [v.name for v in compared(result)]
    return PALETTE[names.index(name) % len(PALETTE)] if name in names else "#333333"


def output_of(v: VariantResult, index: int) -> OutputFidelity | None:
    """The variant's figures for one output (by the model's output index)."""
    return next((f for f in v.outputs if f.index == index), None)


def sqnr_value(t: TensorFidelity) -> float | None:
    """The SQNR to plot: inf when exact, None when undefined (not finite values, an all-zero reference)."""
    return math.inf if t.exact else t.sqnr_db


def _top(values: Sequence[float | None]) -> float:
    """The axis top that leaves room for the exact bars above every finite one."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return max(finite) * EXACT_HEADROOM if finite and max(finite) > 0 else NO_FINITE_TOP


def _layout(fig: go.Figure, title: str, **kwargs) -> go.Figure:
    kwargs.setdefault("height", 360)
    kwargs.setdefault("margin", {"l": 60, "r": 20, "t": 70, "b": 50})
    fig.update_layout(title=title, font=_FONT, **kwargs)
    return fig


@remembered
def output_sqnr_chart(result: CompareResult) -> go.Figure:
    """SQNR of every output against float32's, one group of bars per output, one bar per compared variant."""
    specs = result.output_specs
    values = {v.name: [sqnr_value(f.whole) if (f := output_of(v, s.index)) else None for s in specs]
              for v in compared(result)}
    top = _top([x for row in values.values() for x in row])
    fig = go.Figure()
    for name, row in values.items():
        shown = [top if x is not None and math.isinf(x) else x for x in row]
        fig.add_bar(name=name, x=[_output_label(s) for s in specs], y=shown, marker_color=colour(result, name),
                    marker_pattern_shape=["/" if x is not None and math.isinf(x) else "" for x in row],
                    text=[_db(x) for x in row], textposition="outside", cliponaxis=False,
                    hovertext=[f"<b>{name}</b> · {s.description}<br>SQNR {_db(x)}" for s, x in zip(specs, row)],
                    hovertemplate="%{hovertext}<extra></extra>")
    title = "Error per output: SQNR against float32 (dB, higher is closer)"
    note = "about 6 dB per bit; hatched: exact, identical to float32's"
    if not values:
        fig.add_annotation(text="no variant besides float32 was built", xref="paper", yref="paper", x=0.5, y=0.5,
                           showarrow=False)
    return _layout(fig, f"{title}<br><sup>{note}</sup>", barmode="group", showlegend=True,
                   yaxis={"title": "SQNR (dB)", "range": [0, top * 1.1]},
                   legend={"orientation": "h", "y": -0.2})


@remembered
def channel_sqnr_chart(result: CompareResult, spec: OutputSpec) -> go.Figure:
    """One output's SQNR per channel (per point for landmarks), a line per compared variant, its worst starred."""
    word = "value" if spec.channel_names else channel_word(spec.role)

    def named(k: int) -> str:
        return channel_name(spec.role, k, spec.channel_names)
    fig = go.Figure()
    exact = []
    for v in compared(result):
        f = output_of(v, spec.index)
        if f is None or not f.channels:
            continue
        if f.whole.exact:  # no line to draw: said in the subtitle
            exact.append(v.name)
            continue
        ys = [sqnr_value(c) for c in f.channels]
        hover = [f"<b>{v.name}</b> · {named(k)}: {_db(y)}" for k, y in enumerate(ys)]
        fig.add_scatter(x=list(range(len(ys))), y=[None if y is None or math.isinf(y) else y for y in ys],
                        mode="lines+markers" if len(ys) <= 64 else "lines", name=v.name, hovertext=hover,
                        hovertemplate="%{hovertext}<extra></extra>", line={"color": colour(result, v.name), "width": 1},
                        marker={"size": 5})
        worst = f.worst_channel
        if worst is not None and not f.channels[worst].exact and ys[worst] is not None:
            fig.add_scatter(x=[worst], y=[ys[worst]], mode="markers+text", text=[f"worst: {named(worst)}"],
                            textposition="bottom center", showlegend=False, hoverinfo="skip",
                            marker={"symbol": "star", "size": 15, "color": colour(result, v.name),
                                    "line": {"color": "#333333", "width": 1}})
    title = f"{spec.name}: SQNR per {word} against float32 (dB)"
    note = f"★ each variant's worst {word}; exact {word}s (identical to float32's) leave gaps" + (
        f"; exact everywhere: {', '.join(exact)}" if exact else "")
    return _layout(fig, f"{title}<br><sup>{note}</sup>", showlegend=True, legend={"orientation": "h", "y": -0.25},
                   xaxis={"title": word}, yaxis={"title": "SQNR (dB)", "rangemode": "tozero"}, height=380)


def axis_line(v: VariantResult, spec: OutputSpec) -> str | None:
    """A landmarks output's SQNR per coordinate, e.g. 'int8: x 55.1 dB, y 54.9 dB, z 40.2 dB (worst: z)'."""
    f = output_of(v, spec.index)
    if f is None or len(f.axes) < 2:
        return None
    parts = ", ".join(f"{axis_name(k)} {_db(sqnr_value(a))}" for k, a in enumerate(f.axes))
    worst = f" (worst: {axis_name(f.worst_axis)})" if f.worst_axis is not None and not f.axes[f.worst_axis].exact \
        else ""
    return f"{v.name}: {parts}{worst}"


def _output_label(spec: OutputSpec) -> str:
    return f"{spec.name}<br>{spec.role.value} {spec.shape_text}"


def _db(value: float | None) -> str:
    """An SQNR in words: '27.4 dB', 'exact', '–' (undefined)."""
    if value is None:
        return "–"
    return "exact" if math.isinf(value) else f"{value:.1f} dB"

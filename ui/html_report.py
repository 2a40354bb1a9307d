"""A self-contained HTML report: charts inline with plotly.js embedded, opens offline."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping
from datetime import datetime, UTC

import numpy as np
import plotly.io as pio
from plotly.offline import get_plotlyjs
from PIL import Image

from quant_core import CompareResult, Mode
from quant_core.results.report import variant_description, variant_title
from quant_core.results.summary import STATUS, failure_lines, summarize
from quant_core.results.verdict import Floor, Target, decide
from ui import charts

_CSS = """
body{font-family:Inter,Segoe UI,Helvetica,Arial,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{margin-bottom:.2rem} .sub{color:#666;margin-top:0} table{border-collapse:collapse;width:100%;margin:1rem 0}
th,td{border-bottom:1px solid #e3e3e3;padding:.35rem .5rem;text-align:right;font-size:.9rem}
th:first-child,td:first-child{text-align:left} .best{background:#dff5e3;font-weight:600}
.failed{color:#b00020} .grid{display:grid;grid-template-columns:repeat(2,1fr);gap:1rem}
.note{background:#fff8e1;border-left:4px solid #f2b705;padding:.5rem .8rem;margin:.5rem 0}
.img td{vertical-align:top;text-align:left} .img img{width:56px;image-rendering:pixelated} .diff{color:#b00020}
code{background:#f4f4f4;padding:0 .25rem} .glossary li{font-size:.9rem;color:#444;margin:.15rem 0}
.picks{display:grid;grid-template-columns:repeat(3,1fr);gap:1rem} .pick{border:1px solid #ddd;border-radius:8px;
padding:.6rem .9rem} .pick p{font-size:.9rem;margin:.3rem 0} .target{color:#666;font-size:.85rem}
.ship{color:#1b7f3a;font-size:1.4rem;font-weight:700} .none{color:#b26a00;font-size:1.4rem;font-weight:700}
"""
IMAGES_SHOWN = 60  # per-image rows in the report; the JSON report has every image


def _figure(fig) -> str:
    return pio.to_html(fig, full_html=False, include_plotlyjs=False, config={"displaylogo": False})


def _thumb(pixels: np.ndarray | bytes | None) -> str:
    """An inline thumbnail from RGB pixels or PNG bytes (a published comparison stores PNGs)."""
    if pixels is None:
        return ""
    if isinstance(pixels, np.ndarray):
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="PNG")
        pixels = buf.getvalue()
    return f'<img alt="" src="data:image/png;base64,{base64.b64encode(pixels).decode()}">'


def _summary_table(result: CompareResult) -> str:
    """The summary as the app shows it: same columns, same text, the best value of each column highlighted."""
    table = summarize(result)
    out = ["<table><tr>" + "".join(f"<th>{html.escape(c.title)}</th>" for c in table.columns) + "</tr>"]
    for row in table.rows:
        cells = []
        for c in table.columns:
            failed = not row.ok and c is STATUS
            klass = ' class="failed"' if failed else (' class="best"' if table.is_best(row, c) else "")
            cells.append(f"<td{klass}>{html.escape(table.text(row, c))}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "".join(out) + "</table>"


def _verdict_section(result: CompareResult, floor: Floor | None) -> str:
    """The verdict above the summary: one card per deployment target, the floor and how each pick is made."""
    verdict = decide(result, floor=floor)
    cards = "".join(
        f'<div class="pick"><div class="target">{html.escape(p.target.heading)}</div>'
        f'<div class="{"ship" if p.variant else "none"}">{html.escape(p.variant or "None fits")}</div>'
        f"<p>{html.escape(p.reason)}</p></div>" for p in verdict.picks)
    rules = "".join(f"<li><b>{html.escape(t.heading)}</b>: {html.escape(t.rule)}.</li>" for t in Target)
    note = f'<p class="sub">{html.escape(verdict.note)}</p>' if verdict.note else ""
    return (f"<h2>Which variant to ship</h2><p>Fidelity floor: <b>{html.escape(verdict.floor.label)}</b>. "
            "Variants with a warning or a failure are never picked.</p>"
            f'<div class="picks">{cards}</div>{note}<ul class="glossary">{rules}</ul>')


def _glossary(result: CompareResult) -> str:
    """What each column of the summary table means: the same sentences as the app's hover help."""
    items = "".join(f"<li><b>{html.escape(title)}</b>: {html.escape(text)}</li>"
                    for title, text in charts.summary_column_help(result).items())
    return f'<h3>What the columns mean</h3><ul class="glossary">{items}</ul>'


def _images_table(result: CompareResult, thumbs: Mapping[str, np.ndarray | bytes],
                  limit: int = IMAGES_SHOWN) -> str:
    vs = charts.ok_variants(result)
    flags = charts.disagreement(result)
    order = sorted(range(len(result.images)), key=lambda k: not flags[k])[:limit]
    shown = (f'<p class="note">First {len(order)} of {len(result.images)} images shown (those with '
             "disagreements first); the JSON report has every image.</p>" if len(order) < len(result.images) else "")
    base = result.baseline
    head = "<tr><th>image</th>" + "".join(f"<th>{html.escape(v.name)}</th>" for v in vs) + "</tr>"
    rows = []
    for k in order:
        img = result.images[k]
        cells = [f"<td>{_thumb(thumbs.get(img.file))}<br>{html.escape(img.file.split('/')[-1])}"
                 + (f"<br><b>{html.escape(img.label)}</b>" if img.label else "") + "</td>"]
        for v in vs:
            top = v.topk[k][0]
            differs = base is not None and v.top1[k] != base.top1[k]
            cells.append(f'<td class="{"diff" if differs else ""}">{html.escape(top.label)} {top.prob:.3f}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f'{shown}<table class="img">{head}{"".join(rows)}</table>'


def render_report(result: CompareResult, *, thumbnails: Mapping[str, np.ndarray | bytes] | None = None,
                  title: str | None = None, floor: Floor | None = None) -> str:
    """The report as one HTML document with everything inline; the verdict is made under `floor`."""
    env = result.environment
    plotly_js = get_plotlyjs().replace("</script", "<\\/script")
    figures = [charts.fidelity_chart(result), charts.latency_chart(result), charts.size_chart(result),
               charts.memory_chart(result), charts.ops_chart(result)]
    if result.labelled:
        figures += [charts.confusion_chart(result, v.name) for v in charts.ok_variants(result)
                    if v.mode in (Mode.FLOAT32, Mode.INT8)
                    and len(charts.confusion_classes(result, v.name)) <= charts.MAX_CONFUSION_CLASSES]
    warnings = [f'<div class="note">{html.escape(v.name)} {html.escape(v.warning)}</div>'
                for v in result.variants if v.ok and v.warning]
    failures = [f'<div class="note failed">{html.escape(line)}</div>' for line in failure_lines(result)]
    modes = "".join(f"<li><code>{html.escape(v.name)}</code> — <b>{html.escape(variant_title(v))}</b>: "
                    f"{html.escape(variant_description(v))}</li>" for v in result.variants)
    m = result.model
    return f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>{html.escape(title or f"Quantization report: {m.name}")}</title><style>{_CSS}</style>
<script type="text/javascript">{plotly_js}</script></head>
<body><h1>Quantization report: {html.escape(m.name)}</h1>
<p class="sub">{datetime.now(UTC):%Y-%m-%d %H:%M UTC} · {len(result.images)} images ·
{m.format.value} model, input {"×".join(str(d) for d in m.input_shape[1:])}, {m.num_classes} classes,
{m.param_count:,} parameters · sha256 {m.sha256[:12]}</p>
<!-- verdict: start -->{_verdict_section(result, floor)}<!-- verdict: end -->
<h2>Summary</h2>
<p>Each variant of the model was built with the TensorFlow Lite converter or the LiteRT Quantizer, checked
against the original model and measured on the same images. <b>Accuracy</b> uses the true labels
{"(" + html.escape(result.labels_source) + ")" if result.labelled else "(not available: images were unlabelled)"}.
{html.escape(charts.coarseness_note(len(result.images)) if result.labelled else '')}Best values are highlighted
(agreement and mean |Δp|: among the variants compared with float32); what each column means is listed below
the table.</p>
{_summary_table(result)}{"".join(failures)}{"".join(warnings)}{_glossary(result)}
<div class="grid">{"".join(f"<div>{_figure(f)}</div>" for f in figures)}</div>
<h2>What the variants are</h2><p>As measured: which ops each variant computes in integer or in float, read
from the built model.</p><ul>{modes}</ul>
<h2>Per image</h2><p>Top-1 prediction and probability per variant; red where it differs from float32
(images with disagreements first).</p>{_images_table(result, thumbnails or {})}
<h2>How this was measured</h2>
<p>Preprocessing: {html.escape(result.preprocessing.normalization.label)}, {result.preprocessing.resize.value}
resize to {m.height}×{m.width} ({html.escape(result.preprocessing.source)}).
Calibration: {html.escape(result.calibration.source)}.
Latency: one image, <code>invoke()</code> only, after warm-up; median and 90th percentile of repeated runs with
{env.threads} thread(s) on {html.escape(env.cpu)} ({html.escape(env.machine)}).</p>
<ul>{"".join(f"<li>{html.escape(n)}</li>" for n in env.notes)}</ul>
<p class="sub">{html.escape(", ".join(f"{n} {v}" for n, v in env.packages))}; Python {html.escape(env.python)}.</p>
</body></html>"""

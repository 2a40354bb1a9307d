"""A self-contained HTML report: charts inline with plotly.js embedded, opens offline."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from datetime import datetime, UTC

import numpy as np
import plotly.io as pio
from plotly.offline import get_plotlyjs
from PIL import Image

from quant_core import CompareResult, Mode
from quant_core.fidelity import OutputFidelity, TensorFidelity
from quant_core.outputs import AGREEMENT
from quant_core.results.report import per_image_agreement, variant_description, variant_title
from quant_core.results.summary import (EXACT, STATUS, axis_name, channel_name, channel_word, failure_lines,
                                        summarize)
from quant_core.results.verdict import Floor, Target, decide
from quant_core.tasks import CoordSpace, OutputSpec, Role, Task
from ui import charts, html_boxes

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
.img img.boxes{width:192px;image-rendering:auto}
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
    return (f"<h2>Which variant to ship</h2><p>Fidelity floor: <b>{html.escape(verdict.floor_label)}</b>. "
            "Variants with a warning or a failure are never picked.</p>"
            f'<div class="picks">{cards}</div>{note}<ul class="glossary">{rules}</ul>')


def _glossary(result: CompareResult) -> str:
    """What each column of the summary table means: the same sentences as the app's hover help."""
    items = "".join(f"<li><b>{html.escape(title)}</b>: {html.escape(text)}</li>"
                    for title, text in charts.summary_column_help(result).items())
    return f'<h3>What the columns mean</h3><ul class="glossary">{items}</ul>'


def _number(value: float | None, spec: str) -> str:
    """A figure formatted by `spec`; '–' when it was not measured."""
    return "–" if value is None else format(value, spec)


def _tensor_cells(t: TensorFidelity) -> list[str]:
    """SQNR, cosine, max |Δ| and relative RMSE of one tensor as the report prints them."""
    sqnr = EXACT if t.exact else _number(t.sqnr_db, ".1f")
    return [sqnr, _number(t.cosine, ".6f"), _number(t.max_abs, ".3g"), _number(t.rel_rmse, ".3g")]


def _worst_cells(f: OutputFidelity) -> list[str]:
    """The worst channel (and, for landmarks, the worst axis) with its SQNR; '' for one channel or exact."""
    cells = []
    for items, worst, name in ((f.channels, f.worst_channel, lambda k: channel_name(f.role, k, f.channel_names)),
                               (f.axes, f.worst_axis, lambda k: f"axis {axis_name(k)}")):
        if worst is None or len(items) < 2 or items[worst].exact:
            cells.append("")
        else:
            cells.append(f"{name(worst)}: {_number(items[worst].sqnr_db, '.1f')} dB")
    return cells


def _output_table(result: CompareResult, spec: OutputSpec) -> str:
    """One output's fidelity to float32's per built variant: whole tensor, then where it is worst."""
    landmarks = spec.role is Role.LANDMARKS
    titles = ["variant", "SQNR dB", "cosine", "max |Δ|", "rel. RMSE", f"worst {channel_word(spec.role)}",
              *(["worst axis"] if landmarks else [])]
    rows = []
    for v in charts.ok_variants(result):
        f = next((f for f in v.outputs if f.index == spec.index), None)
        if f is None:
            continue
        worst = _worst_cells(f)
        cells = [v.name, *_tensor_cells(f.whole), worst[0], *(worst[1:] if landmarks else [])]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    head = "<tr>" + "".join(f"<th>{html.escape(t)}</th>" for t in titles) + "</tr>"
    return f"<h3>{html.escape(spec.description)}</h3><table>{head}{''.join(rows)}</table>"


def _outputs_section(result: CompareResult) -> str:
    """Each output of the model in one line, and its fidelity to float32's per variant."""
    if not result.output_specs:
        return ""
    evidence = "".join(f"<li><code>{html.escape(s.name)}</code>: {html.escape(s.evidence)}</li>"
                       for s in result.output_specs)
    return ("<h2>Outputs</h2><p>What each output of the model holds (inferred from its shape, name and values on "
            "these images, or set by you), and how close each variant's is to float32's on the same images: "
            "SQNR (higher is closer, about 6 dB per bit; exact: identical), cosine similarity, the largest "
            "difference and the RMSE relative to float32's; the worst channel (a class, a map, a point) shows where "
            f'one part of an output fares worse than the rest.</p><ul class="glossary">{evidence}</ul>'
            + "".join(_output_table(result, s) for s in result.output_specs))


def _task_images_table(result: CompareResult, thumbs: Mapping[str, np.ndarray | bytes],
                       limit: int = IMAGES_SHOWN) -> str:
    """A non-classifier's per-image agreement with float32 per quantized variant, the furthest images first."""
    base = result.baseline
    found = {name: values for name, values in per_image_agreement(result).items()
             if base is None or name != base.name}  # float32 against itself says nothing
    if not found:
        return "<p>No per-image measure here: the table and the outputs above cover every image.</p>"
    errors = _pixel_errors(result)
    order = sorted(range(len(result.images)), key=lambda k: _distance(k, found, errors))[:limit]
    shown = (f'<p class="note">First {len(order)} of {len(result.images)} images shown (the furthest from float32 '
             "first); the JSON report has every image.</p>" if len(order) < len(result.images) else "")
    head = "<tr><th>image</th>" + "".join(f"<th>{html.escape(name)}</th>" for name in found) + "</tr>"
    rows = []
    for k in order:
        img = result.images[k]
        cells = [f"<td>{_thumb(thumbs.get(img.file))}<br>{html.escape(img.file.split('/')[-1])}</td>"]
        cells += [_agreement_cell(values[k], None if name not in errors else errors[name][k],
                                  cosine=result.task is Task.EMBEDDING) for name, values in found.items()]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f'{shown}<table class="img">{head}{"".join(rows)}</table>'


def _distance(k: int, found: Mapping[str, Sequence[float | None]],
              errors: Mapping[str, Sequence[float | None]]) -> tuple[float, float]:
    """How far image k is from float32 over the variants, for sorting: the lowest agreement, then the largest error."""
    agreements = [x for values in found.values() if (x := values[k]) is not None]
    distances = [x for values in errors.values() if (x := values[k]) is not None]
    return min(agreements, default=1.0), -max(distances, default=0.0)


def _pixel_errors(result: CompareResult) -> dict[str, tuple[float | None, ...]]:
    """A landmark model's mean point error per image, by variant (in input pixels; {} for other tasks)."""
    main = next((s for s in result.output_specs if s.role in (Role.LANDMARKS, Role.HEATMAPS)), None)
    if result.task is not Task.LANDMARKS or main is None or main.space is CoordSpace.UNKNOWN:
        return {}
    return {v.name: f.landmarks.per_image_error for v in charts.ok_variants(result) for f in v.outputs
            if f.index == main.index and f.landmarks is not None}


def _agreement_cell(value: float | None, error: float | None, *, cosine: bool) -> str:
    """One image's agreement with float32 (and its mean point error), red below 99 %."""
    low = value is not None and value < 0.99
    text = _number(value, ".4f" if cosine else ".1%") + ("" if error is None else f" · {error:.2g} px")
    return f'<td class="{"diff" if low else ""}">{html.escape(text)}</td>'


def _per_image_section(result: CompareResult, thumbs: Mapping[str, np.ndarray | bytes]) -> str:
    """Per image: a classifier's top-1 per variant; another model's agreement with float32 per variant."""
    if result.task is Task.CLASSIFICATION:
        return ("<h2>Per image</h2><p>Top-1 prediction and probability per variant; red where it differs from "
                f"float32 (images with disagreements first).</p>{_images_table(result, thumbs)}")
    if result.decoder is not None:
        return f"<h2>Boxes per image</h2>{html_boxes.boxes_table(result, thumbs)}"
    measure = {Task.SEGMENTATION: "mask IoU", Task.LANDMARKS: "PCK@5%", Task.EMBEDDING: "cosine similarity"}
    what = measure.get(result.task, AGREEMENT[result.task][0])
    return (f"<h2>Per image</h2><p>{html.escape(what)} with float32 per variant and image"
            f"{' (and the mean point error)' if result.task is Task.LANDMARKS else ''}; red below 99% "
            f"(images furthest from float32 first).</p>{_task_images_table(result, thumbs)}")


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


def _measures(result: CompareResult) -> str:
    """What the fidelity columns measure: accuracy on the labels, or the task's agreement with float32."""
    if result.task is not Task.CLASSIFICATION:
        title, explanation = AGREEMENT[result.task]
        return (f"The model's task is <b>{html.escape(result.task.value)}</b>: <b>{html.escape(title)}</b> is "
                f"{html.escape(explanation)}. ")
    labels = (f"({html.escape(result.labels_source)})" if result.labelled else
              "(not available: images were unlabelled)")
    coarse = html.escape(charts.coarseness_note(len(result.images)) if result.labelled else "")
    return f"<b>Accuracy</b> uses the true labels\n{labels}.\n{coarse}"


def _against_float32(result: CompareResult) -> str:
    """The columns measured against float32, whose float32 row is never highlighted."""
    if result.task is Task.CLASSIFICATION:
        return "agreement and mean |Δp|"
    return ", ".join(html.escape(c.title) for c in summarize(result).columns if c.against_float32)


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
    classifier = result.task is Task.CLASSIFICATION
    what = (f"{m.num_classes} classes" if classifier else
            f"{html.escape(result.task.value)} model, {len(result.output_specs)} output(s)")
    return f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>{html.escape(title or f"Quantization report: {m.name}")}</title><style>{_CSS}</style>
<script type="text/javascript">{plotly_js}</script></head>
<body><h1>Quantization report: {html.escape(m.name)}</h1>
<p class="sub">{datetime.now(UTC):%Y-%m-%d %H:%M UTC} · {len(result.images)} images ·
{m.format.value} model, input {"×".join(str(d) for d in m.input_shape[1:])}, {what},
{m.param_count:,} parameters · sha256 {m.sha256[:12]}</p>
<!-- verdict: start -->{_verdict_section(result, floor)}<!-- verdict: end -->
<h2>Summary</h2>
<p>Each variant of the model was built with the TensorFlow Lite converter or the LiteRT Quantizer, checked
against the original model and measured on the same images. {_measures(result)}Best values are highlighted
({_against_float32(result)}: among the variants compared with float32); what each column means is listed below
the table.</p>{html_boxes.decoder_paragraph(result) if result.task is Task.DETECTION else ""}
{_summary_table(result)}{"".join(failures)}{"".join(warnings)}{_glossary(result)}
<div class="grid">{"".join(f"<div>{_figure(f)}</div>" for f in figures)}</div>
<h2>What the variants are</h2><p>As measured: which ops each variant computes in integer or in float, read
from the built model.</p><ul>{modes}</ul>
{_outputs_section(result)}
{_per_image_section(result, thumbnails or {})}
<h2>How this was measured</h2>
<p>Preprocessing: {html.escape(result.preprocessing.normalization.label)}, {result.preprocessing.resize.value}
resize to {m.height}×{m.width} ({html.escape(result.preprocessing.source)}).
Calibration: {html.escape(result.calibration.source)}.
Latency: one image, <code>invoke()</code> only, after warm-up; median and 90th percentile of repeated runs with
{env.threads} thread(s) on {html.escape(env.cpu)} ({html.escape(env.machine)}).</p>
<ul>{"".join(f"<li>{html.escape(n)}</li>" for n in env.notes)}</ul>
<p class="sub">{html.escape(", ".join(f"{n} {v}" for n, v in env.packages))}; Python {html.escape(env.python)}.</p>
</body></html>"""

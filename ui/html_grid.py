"""The classifier's per-image grid as one HTML block: each image's thumbnail beside each chosen variant's top classes.

Drawn as Streamlit elements, a page of 12 images was about 150 of them (a row of columns,
an image, captions and a Markdown cell per variant); the browser re-renders its element tree as
each one arrives, and on a page change that cost more than the four charts. One block carries
the same content: the thumbnails inline (small JPEGs), the variants' lines as HTML.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image

from quant_core import CompareResult
from quant_core.results.summary import prediction_lines

RED, GREY = "#e0313b", "rgba(128, 128, 128, 0.95)"
Photo = np.ndarray | bytes


def data_uri(photo: Photo) -> str:
    """A thumbnail inline: PNG bytes as they are (a published one), pixels as a JPEG."""
    if isinstance(photo, bytes):
        return "data:image/png;base64," + base64.b64encode(photo).decode("ascii")
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(photo, np.uint8)).convert("RGB").save(buffer, format="JPEG", quality=88)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _bold(text: str) -> str:
    return f"<b>{html.escape(text)}</b>"


def _image_cell(result: CompareResult, k: int, photo: Photo | None, differ: Sequence[str],
                hidden: Sequence[str]) -> str:
    image = result.images[k]
    name = image.file.split("/")[-1]
    parts = [f'<img src="{data_uri(photo)}" alt="{html.escape(name)}" style="width:100%;border-radius:4px">'
             if photo is not None else ""]
    caption = html.escape(name) + (f" · {_bold(image.label)}" if image.label else "")
    parts.append(f'<div style="font-size:0.85em;opacity:0.7">{caption}</div>')
    if differ:  # which variants disagree, also when their column is not shown
        parts.append(f'<div style="color:{RED}">≠ float32: {html.escape(", ".join(differ))}</div>')
        if hidden:
            parts.append(f'<div style="color:{GREY}">not shown: {html.escape(", ".join(hidden))}</div>')
    return f'<div data-image="{html.escape(name)}">' + "".join(parts) + "</div>"


def _variant_cell(result: CompareResult, k: int, name: str) -> str:
    v, base = result.variant(name), result.baseline
    differs = base is not None and v.top1[k] != base.top1[k]
    head = _bold(name) + (f' <span style="color:{RED}">≠ float32</span>' if differs else "")
    lines = prediction_lines(v.topk[k], true_index=result.images[k].label_index)
    return f'<div data-variant="{html.escape(name)}">' + "<br>".join([head, *map(html.escape, lines)]) + "</div>"


def grid(result: CompareResult, rows: Sequence[int], shown: Sequence[str], thumbs: Mapping[str, Photo]) -> str:
    """Images `rows` (positions in `result.images`), one row each: thumbnail, then each variant in `shown`."""
    ok = [v for v in result.variants if v.ok]
    base = result.baseline
    cells = []
    for k in rows:
        differ = [v.name for v in ok if base is not None and v is not base and v.top1[k] != base.top1[k]]
        cells.append(_image_cell(result, k, thumbs.get(result.images[k].file), differ,
                                 [n for n in differ if n not in shown]))
        cells += [_variant_cell(result, k, name) for name in shown]
    columns = " ".join(["1fr"] + ["2fr"] * len(shown))
    return (f'<div data-qw-grid style="display:grid;grid-template-columns:{columns};gap:1rem 1rem;'
            f'align-items:start;line-height:1.5">' + "".join(cells) + "</div>")

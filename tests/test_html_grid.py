"""The classifier's per-image grid as one HTML block: what each cell says, escaped, with the thumbnail inline."""

from __future__ import annotations

import base64
import io
from dataclasses import replace

import numpy as np
from PIL import Image

from html_cells import cells
from quant_core.results.compare_result import ImageRecord
from synthetic_results import comparison
from ui import html_grid


def result_with_a_hostile_label():
    result = comparison({"float32": 2.0, "int8": 1.0}, labelled=True)
    images = list(result.images)
    images[0] = ImageRecord('a<img src=x onerror="alert(1)">.jpg', "<script>x</script>", 0)
    return replace(result, images=tuple(images))


def test_each_row_has_the_image_then_each_shown_variants_top_classes_and_its_disagreement():
    result = comparison({"float32": 2.0, "float16": 2.1, "int8": 1.0}, labelled=True)
    int8, base = result.variant("int8"), result.baseline
    differs = [k for k in range(len(result.images)) if int8.top1[k] != base.top1[k]]
    body = html_grid.grid(result, [differs[0], 0 if differs[0] else 1], ["float32", "float16"], {})
    images = cells(body, "data-image")
    (first,) = images[result.images[differs[0]].file.split("/")[-1]]
    assert first.endswith("≠ float32: int8\nnot shown: int8")  # int8 disagrees and has no column
    variants = cells(body, "data-variant")
    assert len(variants["float32"]) == len(variants["float16"]) == 2 and "int8" not in variants
    assert variants["float16"][0].startswith("float16\nclass ")
    assert "grid-template-columns:1fr 2fr 2fr" in body


def test_labels_and_file_names_are_escaped():
    body = html_grid.grid(result_with_a_hostile_label(), [0], ["float32"], {})
    assert "<script>" not in body and "<img src=x" not in body and "&lt;script&gt;" in body


def test_thumbnails_are_inline_pixels_as_jpeg_and_published_png_bytes_as_they_are():
    pixels = np.zeros((8, 8, 3), np.uint8)
    uri = html_grid.data_uri(pixels)
    assert uri.startswith("data:image/jpeg;base64,")
    assert Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).size == (8, 8)
    png = io.BytesIO()
    Image.fromarray(pixels).save(png, format="PNG")
    assert html_grid.data_uri(png.getvalue()) == "data:image/png;base64," + base64.b64encode(png.getvalue()).decode()
    result = comparison({"float32": 2.0}, labelled=True)
    body = html_grid.grid(result, [0], ["float32"], {result.images[0].file: pixels})
    assert body.count("<img ") == 1 and 'alt="000.jpg"' in body

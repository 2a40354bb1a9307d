"""Compare for a model that is not a classifier: each output's error, and per image float32's masks or points
beside each variant's, drawn with Pillow from the views kept in the result (`VariantResult.views`).

Segmentation: the photo as the model sees it (cropped and stretched to its input) with the
mask over it, and a difference map against float32's mask (pixels labelled otherwise, in
red) with the image's IoU. Landmarks and heatmap peaks: float32's points and the variant's
on the same photo, in two colours, with the image's mean point error. Embeddings: each
image's cosine similarity to float32's vector. Nothing here runs a model: a published
comparison draws the same.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import streamlit as st
from PIL import Image, ImageDraw

from quant_core import CompareResult
from quant_core.fidelity import OutputFidelity
from quant_core.inputs.preprocess import Preprocessing
from quant_core.outputs import AGREEMENT
from quant_core.results.compare_result import VariantResult
from quant_core.tasks import OutputSpec, Role, Task, main_output
from quant_core.views import MAX_IMAGES, ImageView, OutputViews
from ui import engine, output_charts

PHOTO_SIDE = 256  # px: the thumbnails these views draw on (the classifier's grid keeps its small ones)
DRAW_SIDE = 256  # px: the longer side of every drawn image
MASK_RGBA = (30, 136, 229, 120)  # the mask over the photo: semi-transparent blue
DIFF_RGB = (228, 26, 28)  # pixels labelled otherwise than by float32
FLOAT32_RGB, VARIANT_RGB = (46, 204, 64), (255, 65, 54)  # float32's points, the variant's points
CLASS_PALETTE = ((0, 0, 0, 0), (30, 136, 229, 120), (255, 133, 27, 120), (46, 204, 64, 120), (177, 13, 201, 120),
                 (255, 220, 0, 120), (57, 204, 204, 120), (240, 18, 190, 120))  # class 0 unshaded
PAGE_SIZE = 6  # images per page of the per-image views
GAP = 12  # px between a variant's mask and its difference map, in one picture
MIN_ROW_UNITS = 5  # a row is at least this many pictures wide: few variants shown do not blow the pictures up
Photo = np.ndarray | bytes
BoxViews = Callable[[CompareResult, Mapping[str, Photo]], None]  # a detector's per-image views (ui.box_views)


# ----------------------------------------------------------------------------------------------- drawing (pure)


def model_frame(photo: Photo | None, pre: Preprocessing, *, side: int = DRAW_SIDE) -> Image.Image:
    """The photo as the model sees it: centre-cropped when the preprocessing crops, stretched to the input's shape,
    `side` px on its longer side (grey when there is no photo)."""
    scale = side / max(pre.width, pre.height)
    size = (max(1, round(pre.width * scale)), max(1, round(pre.height * scale)))
    if photo is None:
        return Image.new("RGB", size, (200, 200, 200))
    image = Image.open(io.BytesIO(photo)) if isinstance(photo, bytes) else Image.fromarray(np.asarray(photo))
    image = image.convert("RGB")
    if pre.center_crop:
        crop = min(image.size)
        left, top = (image.width - crop) // 2, (image.height - crop) // 2
        image = image.crop((left, top, left + crop, top + crop))
    return image.resize(size, Image.Resampling.BILINEAR)


def _labels_at(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A label map [h, w] scaled to `size` (width, height) without mixing labels."""
    return np.asarray(Image.fromarray(labels.astype(np.uint8)).resize(size, Image.Resampling.NEAREST))


def mask_overlay(frame: Image.Image, labels: np.ndarray) -> Image.Image:
    """The mask (1: foreground) or class map over the photo, semi-transparent; class 0 unshaded."""
    scaled = _labels_at(labels, frame.size)
    palette = np.array(CLASS_PALETTE, np.uint8)
    layer = palette[np.where(scaled == 0, 0, (scaled - 1) % (len(palette) - 1) + 1)]
    return Image.alpha_composite(frame.convert("RGBA"), Image.fromarray(layer, "RGBA")).convert("RGB")


def difference_map(frame: Image.Image, reference: np.ndarray, labels: np.ndarray) -> Image.Image:
    """The photo faded to grey with float32's mask tinted, and the pixels the variant labels otherwise in red."""
    ref, got = _labels_at(reference, frame.size), _labels_at(labels, frame.size)
    faded = np.asarray(Image.blend(frame.convert("L").convert("RGB"), Image.new("RGB", frame.size, "white"), 0.5))
    tinted = np.where((ref > 0)[..., None], (0.7 * faded + 0.3 * np.array(MASK_RGBA[:3])), faded)
    drawn = np.where((ref != got)[..., None], np.array(DIFF_RGB), tinted)
    return Image.fromarray(drawn.astype(np.uint8))


Points = Sequence[tuple[float, float]]


def points_overlay(frame: Image.Image, pre: Preprocessing,
                   groups: Sequence[tuple[Points, tuple[int, int, int]]]) -> Image.Image:
    """Points (x, y in the model's input pixels) drawn on the photo, one colour per group, later ones smaller on top."""
    image = frame.copy()
    draw = ImageDraw.Draw(image)
    sx, sy = frame.width / pre.width, frame.height / pre.height
    radius = max(1.5, frame.width / 110)
    for layer, (points, rgb) in enumerate(groups):
        r = radius * 0.5 ** layer  # later groups smaller: where they agree, each point is a dot in a ring
        for x, y in points:
            cx, cy = x * sx, y * sy
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=rgb)
    return image


def side_by_side(left: Image.Image, right: Image.Image, *, gap: int = GAP) -> Image.Image:
    """Two pictures of one height in one, `gap` transparent pixels apart."""
    both = Image.new("RGBA", (left.width + gap + right.width, max(left.height, right.height)), (0, 0, 0, 0))
    both.paste(left.convert("RGBA"), (0, 0))
    both.paste(right.convert("RGBA"), (left.width + gap, 0))
    return both


def png(image: Image.Image) -> bytes:
    """The image as PNG bytes (what the page sends and the cache keeps)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


# ----------------------------------------------------------------------------------------------- what to show


def view_of(v: VariantResult, index: int) -> OutputViews | None:
    """The variant's views of one output (by the model's output index)."""
    return next((o for o in v.views if o.index == index), None)


def pictured_outputs(result: CompareResult) -> list[OutputSpec]:
    """The outputs float32 has views of (masks, class maps, landmarks, heatmaps), the main output first."""
    base = result.baseline
    if base is None:
        return []
    main = main_output(result.output_specs)
    specs = [s for s in result.output_specs if view_of(base, s.index) is not None]
    return sorted(specs, key=lambda s: (main is None or s.index != main.index, s.index))


def image_error(f: OutputFidelity | None, k: int) -> float | None:
    """How far one variant is from float32 on image k (higher is worse): 1 − IoU, or the mean point error."""
    if f is None:
        return None
    if f.mask is not None and k < len(f.mask.per_image_iou):
        return 1.0 - f.mask.per_image_iou[k]
    if f.landmarks is not None and k < len(f.landmarks.per_image_error):
        return f.landmarks.per_image_error[k]
    if f.embedding is not None and k < len(f.embedding.per_image_cosine):
        cosine = f.embedding.per_image_cosine[k]
        return None if cosine is None else 1.0 - cosine
    return None


def worst_first(result: CompareResult, names: Sequence[str], index: int, images: int) -> list[int]:
    """Image positions, the one where a shown variant strays furthest from float32 first (ties: image order)."""
    def badness(k: int) -> float:
        found = [image_error(output_charts.output_of(result.variant(n), index), k) for n in names]
        values = [x for x in found if x is not None]
        return max(values, default=0.0)

    return sorted(range(images), key=lambda k: (-badness(k), k))


def default_variants(result: CompareResult, count: int = 3) -> list[str]:
    """float32 and the `count` variants furthest from it in the task's agreement (ties: build order)."""
    others = output_charts.compared(result)
    ranked = sorted(others, key=lambda v: math.inf if v.top1_agreement is None else v.top1_agreement)
    base = result.baseline
    return ([base.name] if base else []) + [v.name for v in ranked[:count]]


def image_caption(spec: OutputSpec, f: OutputFidelity | None, k: int) -> str:
    """What one variant's view of image k says: its IoU or point error against float32's."""
    if f is None:
        return ""
    if f.mask is not None and k < len(f.mask.per_image_iou):
        if f.mask.per_image_agreement[k] == 1:
            return "the same mask as float32's"
        return (f"IoU {f.mask.per_image_iou[k]:.3f} with float32 · {1 - f.mask.per_image_agreement[k]:.2%} of "
                "pixels differ (red)")
    if f.landmarks is not None and k < len(f.landmarks.per_image_error):
        error = f.landmarks.per_image_error[k]
        if error is None:
            return "points not finite"
        if error == 0:
            return "the same points as float32's"
        unit = "" if f.landmarks.mean_error_share is None else " px"
        pck = f.landmarks.per_image_pck[k]
        return f"mean point error {error:.2f}{unit} from float32's" + (f" · PCK@5% {pck:.0%}" if pck is not None
                                                                       else "")
    return ""


# ----------------------------------------------------------------------------------------------- cached drawings


@st.cache_data(show_spinner=False, max_entries=1024)
def drawn(request_key: str, variant: str, output: int, image: int, kind: str, photo_key: str, *, _photo: Photo | None,
          _pre: Preprocessing, _view: ImageView, _reference: ImageView) -> bytes:
    """One drawn view as PNG, kept per result (request key), variant, output, image and kind: "mask" (over the
    photo), "diff" (against float32's mask), "mask and diff" (the two side by side: one picture per variant
    keeps the page's element count down), "points" (float32's and the variant's), "float32 points"; a display
    change redraws nothing."""
    frame = model_frame(_photo, _pre)
    if kind in ("points", "float32 points"):
        groups = [(_reference.points, FLOAT32_RGB)] + ([(_view.points, VARIANT_RGB)] if kind == "points" else [])
        return png(points_overlay(frame, _pre, groups))
    labels, reference = _view.mask(), _reference.mask()
    if labels is None or reference is None:
        return png(frame)
    if kind == "mask":
        return png(mask_overlay(frame, labels))
    if kind == "diff":
        return png(difference_map(frame, reference, labels))
    return png(side_by_side(mask_overlay(frame, labels), difference_map(frame, reference, labels)))


def _photo_key(photo: Photo | None) -> str:
    """What tells two thumbnails of one image apart (a published one is smaller than a live one)."""
    if photo is None:
        return "none"
    return f"png{len(photo)}" if isinstance(photo, bytes) else "x".join(str(d) for d in np.shape(photo))


# ----------------------------------------------------------------------------------------------- page parts


def photos(paths: tuple[str, ...], key: str, result: CompareResult) -> dict[str, np.ndarray]:
    """The inputs' thumbnails by image name, those with views (the first MAX_IMAGES) at PHOTO_SIDE.

    What Compare draws on, and what Report & share publishes: a publication keeps sharp photos
    for the views and small ones for the rest.
    """
    small = engine.thumbnails(paths, key)
    if result.task is Task.CLASSIFICATION:
        return small
    large = engine.thumbnails(paths, key, size=PHOTO_SIDE)
    return small | {i.file: large[i.file] for i in result.images[:MAX_IMAGES] if i.file in large}


DETAIL_TABS = ("Per image", "Error per output")


@st.fragment
def details(result: CompareResult, thumbs: Mapping[str, Photo], *, boxes: BoxViews | None = None) -> None:
    """The views and the error charts in two tabs, only the open one drawn (a tab change reruns only this);
    `boxes` draws a detector's per-image views (injected: it builds on this module).

    Both at once were about a third of Compare's page change in the browser (each Plotly chart
    and each picture is drawn anew on arrival); one at a time keeps the page change in budget.
    """
    views, errors = st.tabs(DETAIL_TABS, key="w.detail_tab", on_change="rerun")
    if views.open:
        with views:
            per_image(result, thumbs, boxes=boxes)
    if errors.open:
        with errors:
            output_errors(result)


@st.fragment
def output_errors(result: CompareResult) -> None:
    """SQNR per output and per variant; then, for a chosen output, per channel with its worst marked."""
    st.plotly_chart(output_charts.output_sqnr_chart(result), key="output_sqnr")
    specs = list(result.output_specs)
    if not specs or not output_charts.compared(result):
        return
    main = main_output(specs)
    names = [s.name for s in specs]
    name = st.selectbox("Output", names, index=names.index(main.name) if main else 0, key="w.output_detail",
                        help="Its error channel by channel: a channel whose range differs from its neighbours stands "
                             "out.") if len(specs) > 1 else names[0]
    spec = specs[names.index(name)]
    widths = {len(f.channels) for v in output_charts.compared(result) if (f := output_charts.output_of(v, spec.index))}
    if max(widths, default=0) > 1:
        st.plotly_chart(output_charts.channel_sqnr_chart(result, spec), key="channel_sqnr")
    else:
        st.caption(f"{spec.name} has no channels to tell apart: its SQNR is the output's, above.")
    lines = [line for v in output_charts.compared(result) if (line := output_charts.axis_line(v, spec))]
    if lines:
        st.caption("SQNR per coordinate, over every point: " + "; ".join(lines) + ".")


@st.fragment
def per_image(result: CompareResult, thumbs: Mapping[str, Photo], *, boxes: BoxViews | None = None) -> None:
    """float32's view of each image beside each chosen variant's, the image where they differ most first."""
    if result.decoder is not None and boxes is not None:
        boxes(result, thumbs)
        return
    if result.task is Task.DETECTION and result.decoder is None:
        st.caption("Boxes need a decoder: choose one on **Model & data** and run again to see each variant's boxes.")
    pictured = pictured_outputs(result)
    if not pictured:
        _embedding_table(result)
        return
    ok = [v.name for v in result.variants if v.ok and v.views]
    shown = st.multiselect("Variants", ok, default=[n for n in default_variants(result) if n in ok],
                           key="w.view_variants", help="By default float32 and the three variants furthest from it.")
    names = [s.name for s in pictured]
    spec = pictured[names.index(st.selectbox("Output", names, key="w.view_output"))] if len(pictured) > 1 \
        else pictured[0]
    base = result.baseline
    reference = view_of(base, spec.index) if base is not None else None
    if base is None or reference is None or not shown:
        st.caption("Choose at least one variant.")
        return
    count = min(len(reference.images), len(result.images))
    rows = worst_first(result, [n for n in shown if n != base.name], spec.index, count)
    st.caption(_legend(spec) + (f" Views are kept for the first {count} of {len(result.images)} images."
                                if count < len(result.images) else ""))
    pages = max(1, math.ceil(len(rows) / PAGE_SIZE))
    page = st.number_input("Page", 1, pages, 1, key="w.view_page") if pages > 1 else 1
    for k in rows[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]:
        _image_row(result, spec, k, shown, thumbs.get(result.images[k].file), reference)


def _legend(spec: OutputSpec) -> str:
    """What the pictures show, in one caption."""
    if spec.role in (Role.MASK, Role.CLASS_MAP):
        shading = "the mask in blue" if spec.role is Role.MASK else "each class in its colour (class 0 unshaded)"
        return (f"Each photo as the model sees it (stretched to its input) with {shading}; beside each variant's, "
                "float32's faded and the pixels the variant labels otherwise in red. The image where a variant "
                "differs most comes first.")
    return ("Each photo as the model sees it: float32's points in green, the variant's as smaller red dots on top "
            "(where they agree, a red dot in a green ring). The image where a variant strays most comes first.")


def _image_row(result: CompareResult, spec: OutputSpec, k: int, shown: Sequence[str], photo: Photo | None,
               reference: OutputViews) -> None:
    """One image in one row: float32's view, then each shown variant's views side by side, each with its figures."""
    mask = spec.role in (Role.MASK, Role.CLASS_MAP)
    base = result.baseline
    ordered = ([base.name] if base is not None and base.name in shown else []) + \
              [n for n in shown if base is None or n != base.name]
    kinds = {n: ("mask" if n == base.name else "mask and diff") if mask else
             ("float32 points" if n == base.name else "points") for n in ordered} if base is not None else {}
    widths = [2 if kinds[n] == "mask and diff" else 1 for n in ordered]
    columns = st.columns(widths + ([MIN_ROW_UNITS - sum(widths)] if sum(widths) < MIN_ROW_UNITS else []))
    photo_key = _photo_key(photo)
    for column, name in zip(columns, ordered):
        v = result.variant(name)
        views = view_of(v, spec.index)
        if views is None or k >= len(views.images):
            column.caption(f"**{name}**: no view")
            continue
        column.image(drawn(result.request_key, name, spec.index, k, kinds[name], photo_key, _photo=photo,
                           _pre=result.preprocessing, _view=views.images[k], _reference=reference.images[k]),
                     width="stretch", output_format="PNG")  # as drawn: "auto" would re-encode it at every rerun
        is_base = v is base
        figures = "" if is_base else image_caption(spec, output_charts.output_of(v, spec.index), k)
        title = result.images[k].file.split("/")[-1] if is_base else name
        column.caption(f"**{title}**" + (" · float32" if is_base else "") + (f"  \n{figures}" if figures else ""))


def _embedding_table(result: CompareResult) -> None:
    """Outputs without a picture: each image's cosine similarity to float32's embedding, per variant."""
    rows = []
    for v in output_charts.compared(result):
        for f in v.outputs:
            if f.embedding is not None:
                rows.append({"variant": v.name, "output": f.name,
                             **{result.images[k].file.split("/")[-1]: c
                                for k, c in enumerate(f.embedding.per_image_cosine)}})
    if not rows:
        st.caption(f"This model's outputs have no picture: the chart above has their error; the table, "
                   f"{AGREEMENT[result.task][0]}.")
        return
    st.caption("Each image's cosine similarity to float32's embedding (1: the same direction).")
    st.dataframe(rows, hide_index=True)

"""Compare for a detector, per image: float32's boxes beside each variant's on the photo as the model sees it, the
boxes a variant missed and the ones it added marked, at a score threshold a slider changes without running a model.

Each variant's detections are kept for every image down to the decoder's floor
(`VariantResult.detections`), so a threshold only re-matches them (`detection.match_detections`):
a float32 box no variant box matches is MISSED (thick yellow, tagged), a variant box matching none
is EXTRA (orange, tagged). Boxes are in the model input's pixels and drawn on `task_views.model_frame`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import streamlit as st
from PIL import Image, ImageDraw, ImageFont

from quant_core import CompareResult
from quant_core import detection as det
from quant_core.boxes import ImageBoxes, kept
from quant_core.inputs.preprocess import Preprocessing
from quant_core.views import MAX_IMAGES
from ui import task_views
from ui.task_views import FLOAT32_RGB, PAGE_SIZE, VARIANT_RGB, Photo

MISSED_RGB = (255, 220, 0)  # a float32 box the variant has no box for: yellow, thick
EXTRA_RGB = (255, 133, 27)  # a variant box that matches none of float32's: orange
TEXT_RGB = (0, 0, 0)
MAX_THRESHOLD = 0.95  # the slider's top: above it MediaPipe's and YOLO's scores rarely tell models apart
THRESHOLD_STEP = 0.05
THRESHOLD_HELP = ("Detections scoring at least this count, for float32 and every variant alike. Each variant's "
                  "detections were kept down to the decoder's floor, so a change re-matches them without running "
                  "a model.")


# ----------------------------------------------------------------------------------------------- drawing (pure)


@dataclass(frozen=True)
class Labelling:
    """How boxes are labelled: with their class when the model tells classes apart (no names are stored)."""

    classes: bool = False

    def text(self, score: float, cls: int, tag: str = "") -> str:
        """"class 2 0.81", or "0.81" for a one-class detector, after a tag such as "missed"."""
        words = ([tag] if tag else []) + ([f"class {cls}"] if self.classes else []) + [f"{score:.2f}"]
        return " ".join(words)


def _font(frame: Image.Image) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """A small font, about 1/24 of the picture's width (Pillow's own, scalable with FreeType)."""
    return ImageFont.load_default(size=max(9, round(frame.width / 24)))


class _Pen:
    """Draws boxes, tags and keypoints given in the model input's pixels on a picture of another size."""

    def __init__(self, image: Image.Image, pre: Preprocessing, labelling: Labelling) -> None:
        self.draw = ImageDraw.Draw(image)
        self.size = image.size
        self.sx, self.sy = image.width / pre.width, image.height / pre.height
        self.font = _font(image)
        self.labelling = labelling
        self.line = max(1, round(image.width / 128))  # 2 px on a 256 px picture

    def box(self, found: det.Detections, i: int, rgb: tuple[int, int, int], *, width: int, tag: str = "",
            label: bool = True, dot: float = 2.0) -> None:
        """Detection i: its box `width` lines thick, its keypoints as dots, and its label above it."""
        x0, y0, x1, y1 = found.boxes[i]
        box = (x0 * self.sx, y0 * self.sy, max(x0, x1) * self.sx, max(y0, y1) * self.sy)
        self.draw.rectangle(box, outline=rgb, width=width * self.line)
        if found.keypoints is not None:
            r = dot * self.line / 2
            for x, y in found.keypoints[i]:
                cx, cy = x * self.sx, y * self.sy
                self.draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=rgb)
        if label:
            self._label(box, self.labelling.text(float(found.scores[i]), int(found.classes[i]), tag), rgb)

    def _label(self, box: tuple[float, float, float, float], text: str, rgb: tuple[int, int, int]) -> None:
        """The text on a patch of the box's colour above its top-left corner, kept inside the picture."""
        left, top, right, bottom = self.draw.textbbox((0, 0), text, font=self.font)
        w, h = right - left + 2, bottom - top + 2
        x = min(max(0.0, box[0]), self.size[0] - w)
        y = box[1] - h if box[1] - h >= 0 else min(max(0.0, box[1]), self.size[1] - h)
        self.draw.rectangle((x, y, x + w, y + h), fill=rgb)
        self.draw.text((x + 1 - left, y + 1 - top), text, fill=TEXT_RGB, font=self.font)


def reference_boxes(frame: Image.Image, pre: Preprocessing, reference: det.Detections, *, threshold: float,
                    labelling: Labelling = Labelling()) -> Image.Image:
    """float32's detections scoring at least `threshold`, in green, labelled, on the photo."""
    image = frame.copy()
    pen = _Pen(image, pre, labelling)
    for i in reversed(range(len(reference))):  # best last: on top
        if reference.scores[i] >= threshold:
            pen.box(reference, i, FLOAT32_RGB, width=1)
    return image


def compared_boxes(frame: Image.Image, pre: Preprocessing, reference: det.Detections, variant: det.Detections, *,
                   threshold: float, labelling: Labelling = Labelling()) -> Image.Image:
    """float32's and a variant's detections at `threshold` on one photo.

    Matched: float32's box thick green, the variant's thin red on top (where they agree, a red line
    in a green band); the label is the variant's. Missed (float32's, unmatched): thick yellow,
    "missed". Extra (the variant's, unmatched): orange, "extra". Keypoints as dots in the box's colour.
    """
    image = frame.copy()
    pen = _Pen(image, pre, labelling)
    match = det.match_detections(reference, variant, score_threshold=threshold)
    for r, _ in match.pairs:
        pen.box(reference, r, FLOAT32_RGB, width=3, label=False, dot=4.0)
    for _, v in match.pairs:
        pen.box(variant, v, VARIANT_RGB, width=1)
    for v in match.extra:
        pen.box(variant, v, EXTRA_RGB, width=2, tag="extra")
    for r in match.missed:
        pen.box(reference, r, MISSED_RGB, width=3, tag="missed")
    return image


# ----------------------------------------------------------------------------------------------- figures


@st.cache_data(show_spinner=False, max_entries=256)
def fidelity(request_key: str, variant: str, threshold: float, *, _reference: Sequence[ImageBoxes],
             _variant: Sequence[ImageBoxes], _keypoints: int) -> det.BoxFidelity:
    """A variant's detections against float32's at one threshold, per result (request key), variant and threshold."""
    return det.box_fidelity(kept(_reference, _keypoints), kept(_variant, _keypoints), score_threshold=threshold)


def figures_row(name: str, found: det.BoxFidelity) -> dict[str, object]:
    """One table row: precision, recall, F1, matched, missed, extra and mean IoU."""
    return {"variant": name, "precision": found.precision, "recall": found.recall, "F1": found.f1,
            "matched": found.true_positives, "missed": found.missed, "extra": found.extra,
            "mean IoU": found.mean_iou}


def image_caption(match: det.ImageMatch) -> str:
    """What one variant's picture of an image says: its F1 with float32 and what it missed and added."""
    if not match.missed and not match.extra:
        return "the same boxes as float32's"
    tp = len(match.pairs)
    f1 = 2 * tp / (2 * tp + len(match.missed) + len(match.extra))
    return f"F1 {f1:.2f} · {len(match.missed)} missed · {len(match.extra)} extra"


def worst_first(matches: Mapping[str, det.BoxFidelity], images: int) -> list[int]:
    """Image positions, the one with most missed and extra boxes over the shown variants first (ties: image order)."""
    def wrong(k: int) -> int:
        return sum(len(f.images[k].missed) + len(f.images[k].extra) for f in matches.values())

    return sorted(range(images), key=lambda k: (-wrong(k), k))


def many_classes(result: CompareResult) -> bool:
    """Whether labels name classes: a YOLO decoder with several, or float32 finding a class other than 0."""
    decoder, base = result.decoder, result.baseline
    if decoder is not None and decoder.yolo is not None:
        return decoder.yolo.num_classes > 1
    return base is not None and any(c != 0 for boxes in base.detections for c in boxes.classes)


# ----------------------------------------------------------------------------------------------- cached drawings


@st.cache_data(show_spinner=False, max_entries=1024)
def drawn(request_key: str, variant: str, image: int, threshold: float, photo_key: str, *, _photo: Photo | None,
          _pre: Preprocessing, _reference: ImageBoxes, _variant: ImageBoxes | None, _keypoints: int,
          _labelling: Labelling) -> bytes:
    """One picture as PNG, per result (request key), variant, image, threshold and photo: float32's boxes alone
    (`_variant` None) or beside the variant's, marked."""
    frame = task_views.model_frame(_photo, _pre)
    reference = _reference.detections(_keypoints)
    if _variant is None:
        return task_views.png(reference_boxes(frame, _pre, reference, threshold=threshold, labelling=_labelling))
    return task_views.png(compared_boxes(frame, _pre, reference, _variant.detections(_keypoints),
                                         threshold=threshold, labelling=_labelling))


# ----------------------------------------------------------------------------------------------- page part


@st.fragment
def per_image_boxes(result: CompareResult, thumbs: Mapping[str, Photo]) -> None:
    """A score threshold, each variant's figures at it, then each image's boxes, float32's beside the variants'."""
    decoder, base = result.decoder, result.baseline
    if decoder is None or base is None or not base.detections:
        st.caption("float32 has no boxes to compare with.")
        return
    top = max(MAX_THRESHOLD, decoder.floor)
    threshold = round(st.slider("Score threshold", min_value=decoder.floor, max_value=top,
                                value=min(max(decoder.threshold, decoder.floor), top), step=THRESHOLD_STEP,
                                key="w.box_threshold", help=THRESHOLD_HELP), 4)
    points = decoder.keypoints
    ok = [v for v in result.variants if v.ok and len(v.detections) == len(base.detections)]
    found = {v.name: fidelity(result.request_key, v.name, threshold, _reference=base.detections,
                              _variant=v.detections, _keypoints=points) for v in ok if v is not base}
    if found:
        st.dataframe([figures_row(name, f) for name, f in found.items()], hide_index=True,
                     column_config={k: st.column_config.NumberColumn(format="%.3f")
                                    for k in ("precision", "recall", "F1", "mean IoU")})
    names = [v.name for v in ok]
    shown = st.multiselect("Variants", names, default=[n for n in task_views.default_variants(result) if n in names],
                           key="w.view_variants", help="By default float32 and the three variants furthest from it.")
    others = [n for n in shown if n != base.name]
    if not shown:
        st.caption("Choose at least one variant.")
        return
    rows = worst_first({n: found[n] for n in others}, len(base.detections))
    st.caption(_legend(len(rows)))
    pages = max(1, math.ceil(len(rows) / PAGE_SIZE))
    page = st.number_input("Page", 1, pages, 1, key="w.view_page") if pages > 1 else 1
    labelling = Labelling(classes=many_classes(result))
    for k in rows[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]:
        _image_row(result, k, shown, found, thumbs.get(result.images[k].file), threshold, labelling)


def _legend(images: int) -> str:
    """What the pictures show, in one caption."""
    sharp = (f" Photos past the first {MAX_IMAGES} are the small thumbnails." if images > MAX_IMAGES else "")
    return ("Each photo as the model sees it: float32's boxes in green; on each variant's, its own in red (where "
            "they agree, a red line in a green band), a float32 box it **missed** thick in yellow, a box of its "
            "own that matches none (**extra**) in orange. Boxes match at IoU 0.5 and the same class. The image "
            "with the most missed and extra boxes comes first." + sharp)


def _image_row(result: CompareResult, k: int, shown: Sequence[str], found: Mapping[str, det.BoxFidelity],
               photo: Photo | None, threshold: float, labelling: Labelling) -> None:
    """One image in one row: float32's boxes (when shown), then each shown variant's, each with its figures."""
    base, decoder = result.baseline, result.decoder
    assert base is not None and decoder is not None
    ordered = ([base.name] if base.name in shown else []) + [n for n in shown if n != base.name]
    columns = st.columns(max(len(ordered), task_views.MIN_ROW_UNITS))
    photo_key = task_views._photo_key(photo)  # pylint: disable=protected-access
    reference = base.detections[k]
    for column, name in zip(columns, ordered):
        is_base = name == base.name
        column.image(drawn(result.request_key, name, k, threshold, photo_key, _photo=photo,
                           _pre=result.preprocessing, _reference=reference,
                           _variant=None if is_base else result.variant(name).detections[k],
                           _keypoints=decoder.keypoints, _labelling=labelling),
                     width="stretch", output_format="PNG")  # as drawn: "auto" would re-encode it at every rerun
        if is_base:
            count = sum(s >= threshold for s in reference.scores)
            column.caption(f"**{result.images[k].file.split('/')[-1]}** · float32  \n"
                           f"{count} box{'' if count == 1 else 'es'}")
        else:
            column.caption(f"**{name}**  \n{image_caption(found[name].images[k])}")

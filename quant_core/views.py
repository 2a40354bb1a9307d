"""What a person looks at for each output on each image: masks as small PNGs, landmarks as points.

Kept in the result (`VariantResult.views`), so the app, a reload and a published link draw
float32's and every variant's masks and points side by side without running a model. Only
the first `MAX_IMAGES` images get views; masks are binary (what the IoU compares) at most
`MASK_SIDE` pixels a side, a class map is its label map, points are x, y in input pixels
rounded to a tenth of a pixel. Roles without a picture (scores, embeddings, generic) have none.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from quant_core.fidelity import heatmap_points, labels as mask_labels
from quant_core.tasks import CoordSpace, OutputSpec, Role

MAX_IMAGES = 12
MASK_SIDE = 128


@dataclass(frozen=True)
class ImageView:
    """One output on one image: a mask (base64 PNG: 1-bit, or a label map) or points."""

    mask_png: str | None = None
    points: tuple[tuple[float, float], ...] = ()  # x, y in the model's input pixels

    def mask(self) -> np.ndarray | None:
        """The mask as an array [h, w] of labels (0/1 for a binary mask)."""
        from PIL import Image  # pylint: disable=import-outside-toplevel

        if self.mask_png is None:
            return None
        return np.asarray(Image.open(io.BytesIO(base64.b64decode(self.mask_png))), dtype=np.uint8)


@dataclass(frozen=True)
class OutputViews:
    """The views of one output: one per image (the first MAX_IMAGES)."""

    index: int
    role: Role
    images: tuple[ImageView, ...]


def views_of(specs: Sequence[OutputSpec], outputs: Sequence[np.ndarray], *,
             input_hw: tuple[int, int]) -> tuple[OutputViews, ...]:
    """The views of every output that has a picture (masks, class maps, landmarks, heatmaps)."""
    found = []
    for spec, values in zip(specs, outputs):
        shown = np.asarray(values[:MAX_IMAGES], np.float64).reshape(-1, *spec.shape[1:])
        images = _views(spec, shown, input_hw)
        if images:
            found.append(OutputViews(spec.index, spec.role, images))
    return tuple(found)


def _views(spec: OutputSpec, values: np.ndarray, input_hw: tuple[int, int]) -> tuple[ImageView, ...]:
    if spec.role is Role.MASK:
        maps = mask_labels(values, threshold=spec.mask_threshold)
        return tuple(ImageView(mask_png=_png(m.astype(np.uint8), bits=1)) for m in maps)
    if spec.role is Role.CLASS_MAP:
        return tuple(ImageView(mask_png=_png(m.astype(np.uint8), bits=8)) for m in mask_labels(values))
    if spec.role is Role.LANDMARKS and spec.coords:
        points = values.reshape(len(values), -1, spec.coords)[..., :2]
        if spec.space is CoordSpace.NORMALIZED:
            points = points * np.array([input_hw[1], input_hw[0]])
        elif spec.space is not CoordSpace.PIXELS:
            return ()
        return tuple(ImageView(points=_rounded(p)) for p in points)
    if spec.role is Role.HEATMAPS:
        return tuple(ImageView(points=_rounded(p)) for p in heatmap_points(values, input_hw=input_hw))
    return ()


def _rounded(points: np.ndarray) -> tuple[tuple[float, float], ...]:
    return tuple((round(float(x), 1), round(float(y), 1)) for x, y in np.nan_to_num(points)[:, :2])


def _png(labels: np.ndarray, *, bits: int) -> str:
    """A label map [h, w] as a base64 PNG, at most MASK_SIDE a side (nearest neighbour keeps the labels)."""
    from PIL import Image  # pylint: disable=import-outside-toplevel

    image = Image.fromarray(labels.squeeze().astype(np.uint8), mode="L")
    if max(image.size) > MASK_SIDE:
        scale = MASK_SIDE / max(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    (image.point(lambda v: 255 if v else 0).convert("1") if bits == 1 else image).save(buffer, format="PNG",
                                                                                      optimize=True)
    return base64.b64encode(buffer.getvalue()).decode()

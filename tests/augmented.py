"""A larger labelled image set made from bundled photos: each a random crop, brightness and
(for photos) mirror image of one.

Used where many images are needed and no larger real set can be shipped (Ray tests, the
throughput benchmark). The images are real photos, altered; the labels are the originals'.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from quant_core.inputs.datasets import open_dataset
from quant_core.inputs.images import spread_over_classes


def write_augmented(source: Path, dest: Path, count: int, *, seed: int = 0, size: int | None = None,
                    flip: bool = True) -> Path:
    """Writes `count` altered copies of the class-folder images under `source` into `dest`/<class>/.

    Copies cycle through the source images class by class (one of each class, then the next
    of each), so every class gets its share.
    `size` (pixels) resizes the copies; by default they keep the source size. `flip` mirrors
    half of them (not for digits: a mirrored digit is another glyph).
    """
    originals = open_dataset([source])
    classes = sorted({str(e.label_name) for e in originals.entries})
    order = spread_over_classes([classes.index(str(e.label_name)) for e in originals.entries], limit=len(originals))
    rng = np.random.default_rng(seed)
    for k in range(count):
        entry = originals.entries[order[k % len(order)]]
        image = Image.open(entry.source).convert("RGB")
        w, h = image.size
        left, top, right, bottom = (int(rng.integers(0, max(1, side // 8))) for side in (w, h, w, h))
        image = image.crop((left, top, w - right, h - bottom))
        if rng.random() < 0.5 and flip:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        image = ImageEnhance.Brightness(image).enhance(float(rng.uniform(0.8, 1.2)))
        if size:
            image = image.resize((size, size), Image.Resampling.BILINEAR)
        folder = dest / str(entry.label_name)
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"aug{k:05d}.{'png' if entry.source.endswith('.png') else 'jpg'}", quality=90)
    return dest

"""Optional ground truth for segmentation and landmark models: masks as PNGs, points as JSON.

Both are matched to the images by file name without its suffix ("people/astronaut.png" is
"astronaut"), and every image needs one: a partial set would make the mean figure depend on
which images happen to be annotated. They are returned aligned to the images' order, in the
model's frame: what the model saw of each image after the preprocessing's optional centre
crop and its resize.

- Masks (`load_masks`): one PNG per image, at the image's size (cropped and resized with it,
  nearest neighbour) or already at the model output's size (used as is); any other size is
  refused, since stretching a mask drawn for another image hides a mismatch. A one-channel
  mask of two values reads the non-zero one as foreground (0/1, 0/255), one of more values
  (anti-aliased edges) those above half the range; a class map's mask holds class indices
  (grayscale or palette PNG).
- Landmarks (`load_landmarks`): a JSON object {"image name": [[x, y], ...]} in the image's
  pixels (a third value per point, z, is ignored), K points for every image.

Anything that does not fit is one `InputError` line naming the file.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, UnidentifiedImageError

from quant_core._serde import MAX_USER_JSON, json_kind, parse_json
from quant_core.errors import InputError
from quant_core.inputs.images import IMAGE_SUFFIXES, MAX_PIXELS, ImageSet

MASK_SUFFIX = ".png"


def load_masks(paths: Sequence[str | Path], *, images: ImageSet, output_hw: tuple[int, int], classes: int = 1,
               center_crop: bool = False) -> np.ndarray:
    """Ground-truth labels [images, H, W] (int64) at the output's size, from PNGs named like the images.

    Args:
        paths: PNG files and folders of them (searched recursively; other files are ignored).
        images: the images, in the order the model saw them.
        output_hw: the mask output's height and width.
        classes: the output's channels: 1 for a sigmoid mask (labels 0/1), C for a class map.
        center_crop: whether the preprocessing crops the centred square before resizing.

    Raises:
        InputError: a missing path, no PNG, a mask matching no image or an image with none,
            an unreadable or colour mask, a mask of another size, a class index out of range.
    """
    files = _mask_files(paths)
    by_name = {_stem(f.name): f for f in files}
    if len(by_name) < len(files):
        twice = next(f for f in files if by_name[_stem(f.name)] is not f)
        raise InputError(f"masks: {by_name[_stem(twice.name)]} and {twice} both name image {_stem(twice.name)}")
    order = align({stem: f.name for stem, f in by_name.items()}, images, what="masks")
    masks = []
    for item, key in zip(images.items, order):
        path = by_name[_stem(key)]
        values = _fit(_read_mask(path), path.name, image_hw=item.pixels.shape[:2], output_hw=output_hw,
                      center_crop=center_crop)
        masks.append(_labels(values, path.name, classes=classes))
    return np.stack(masks)


def _mask_files(paths: Sequence[str | Path]) -> list[Path]:
    """The PNG files among `paths` (folders searched recursively, hidden files skipped), sorted per path."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise InputError(f"{path}: no such file or folder")
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and not p.is_symlink()
                            and p.suffix.lower() == MASK_SUFFIX
                            and not any(part.startswith(".") for part in p.relative_to(path).parts))
        elif path.suffix.lower() == MASK_SUFFIX:
            found.append(path)
        else:
            raise InputError(f"{path.name}: expected a PNG mask named like its image, e.g. astronaut.png")
    if not found:
        raise InputError(f"masks: no PNG files in {', '.join(str(p) for p in paths) or 'nothing given'}; "
                         "expected one PNG per image, named like the image")
    return found


def _stem(name: str) -> str:
    """An image's or a key's name without folders and without its image suffix: the name they are matched by."""
    path = PurePosixPath(name.replace("\\", "/"))
    return path.stem if path.suffix.lower() in IMAGE_SUFFIXES else path.name


def align(keys: dict[str, str], images: ImageSet, *, what: str) -> list[str]:
    """For each image, in order, the key (a file name or a JSON key) naming it; keys maps each key's stem to it.

    Raises:
        InputError: two images share a stem, a key names no image, or an image has no key.
    """
    stems: dict[str, str] = {}
    for item in images.items:
        stem = _stem(item.name)
        if stem in stems:
            raise InputError(f"images {stems[stem]} and {item.name} share the name {stem}; ground truth is "
                             "matched by file name, so rename one")
        stems[stem] = item.name
    stray = sorted(set(keys) - set(stems))
    if stray:
        example = _stem(images.items[0].name) if images.items else "the image's name"
        raise InputError(f"{what}: {keys[stray[0]]} matches no image; expected names like the images' "
                         f"(e.g. {example}){f', and {len(stray) - 1} more' if len(stray) > 1 else ''}")
    missing = [item.name for item in images.items if _stem(item.name) not in keys]
    if missing:
        raise InputError(f"{what}: no ground truth for {len(missing)} of {len(images.items)} images "
                         f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}); expected one per image")
    return [keys[_stem(item.name)] for item in images.items]


def _read_mask(path: Path) -> np.ndarray:
    """The mask's values [H, W] (class indices or intensities), refusing colour and unreadable files."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if image.width * image.height > MAX_PIXELS:
                    raise InputError(f"{path.name}: {image.width}x{image.height} pixels is over the "
                                     f"{MAX_PIXELS // 1_000_000} MP limit")
                image.load()
                return _mask_values(image, path.name)
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(f"{path.name}: too many pixels, over the {MAX_PIXELS // 1_000_000} MP limit") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as err:
        raise InputError(f"{path.name}: not a readable PNG mask ({type(err).__name__})") from None


def _mask_values(image: Image.Image, name: str) -> np.ndarray:
    """A grayscale, 1-bit, 16-bit or palette image's values (palette: its indices); gray RGB as gray."""
    if image.mode in ("LA", "PA"):
        image = image.getchannel(0)
    if image.mode in ("1", "L", "P", "I", "I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(image).astype(np.int64)
    if image.mode in ("RGB", "RGBA"):
        rgb = np.asarray(image.convert("RGB")).astype(np.int64)
        if np.all(rgb == rgb[..., :1]):
            return rgb[..., 0]
    raise InputError(f"{name}: a colour image ({image.mode}); expected a grayscale or palette PNG of labels")


def _fit(values: np.ndarray, name: str, *, image_hw: tuple[int, ...], output_hw: tuple[int, int],
         center_crop: bool) -> np.ndarray:
    """The mask in the output's frame: as is at the output's size; cropped and resized like its image at its size."""
    h, w = values.shape
    if (h, w) == tuple(output_hw):
        return values
    if (h, w) != tuple(image_hw):
        raise InputError(f"{name}: {w}x{h} pixels; expected its image's {image_hw[1]}x{image_hw[0]} "
                         f"or the model output's {output_hw[1]}x{output_hw[0]}")
    if center_crop:
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        values = values[top:top + side, left:left + side]
        h, w = side, side
    rows = np.minimum(((np.arange(output_hw[0]) + 0.5) * h / output_hw[0]).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(output_hw[1]) + 0.5) * w / output_hw[1]).astype(np.int64), w - 1)
    return values[rows][:, cols]


def _labels(values: np.ndarray, name: str, *, classes: int) -> np.ndarray:
    """0/1 for a one-channel mask; class indices checked against C.

    A one-channel mask of two values (0/1, 0/255, a palette's 0/15) reads its non-zero value
    as foreground; one of more (anti-aliased edges) reads values above half the range.
    """
    if classes == 1:
        top = int(values.max(initial=0))
        if len(np.unique(values)) <= 2:
            return (values > 0).astype(np.int64)
        return (values * 2 > (255 if top <= 255 else 65535)).astype(np.int64)
    top = int(values.max(initial=0))
    if top >= classes or int(values.min(initial=0)) < 0:
        raise InputError(f"{name}: holds class {top}; the model's output has {classes} classes (0 to {classes - 1})")
    return values


# ----------------------------------------------------------------------------------------------- landmarks


def load_landmarks(path: str | Path, *, images: ImageSet, input_hw: tuple[int, int], points: int,
                   center_crop: bool = False) -> np.ndarray:
    """Ground-truth points [images, K, 2] (x, y) in the model's input pixels, from JSON in the images' pixels.

    Args:
        path: a JSON object {"image name": [[x, y], ...]}; names as the images' (folders and
            suffix optional: "astronaut" names people/astronaut.png).
        images: the images, in the order the model saw them.
        input_hw: the model's input height and width.
        points: K, the points the model predicts.
        center_crop: whether the preprocessing crops the centred square before resizing.

    Raises:
        InputError: an unreadable file, a name matching no image or an image with none, a wrong
            number of points, a point that is not two or three numbers.
    """
    path = Path(path)
    data = parse_json(read_text(path, what="landmarks file"), what=path.name)
    if not isinstance(data, dict) or not data:
        raise InputError(f"{path.name}: expected a JSON object {{\"image name\": [[x, y], ...]}}, "
                         f"got {json_kind(data)}")
    keys: dict[str, str] = {}
    for key in data:
        if _stem(key) in keys:
            raise InputError(f"{path.name}: {keys[_stem(key)]!r} and {key!r} both name image {_stem(key)}")
        keys[_stem(key)] = key
    order = align(keys, images, what=path.name)
    found = []
    for item, key in zip(images.items, order):
        xy = _points(data[key], f"{path.name}: {key}", points=points)
        found.append(_to_input(xy, image_hw=item.pixels.shape[:2], input_hw=input_hw, center_crop=center_crop))
    return np.stack(found)


def read_text(path: Path, *, what: str) -> str:
    """A user's ground-truth file as text (`what` it is, for the message), refusing a missing, unreadable or
    oversized file in one line."""
    try:
        if path.stat().st_size > MAX_USER_JSON:
            raise InputError(f"{path.name}: {path.stat().st_size:,} bytes; expected at most {MAX_USER_JSON:,}")
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path.name}: cannot read {what} ({type(err).__name__})") from None


def _points(value: object, where: str, *, points: int) -> np.ndarray:
    """[K, 2] from a JSON list of K [x, y] or [x, y, z] lists of numbers."""
    if not isinstance(value, list):
        raise InputError(f"{where}: expected a list of {points} [x, y] points, got {json_kind(value)}")
    if len(value) != points:
        raise InputError(f"{where}: {len(value)} points; the model predicts {points}")
    for k, point in enumerate(value):
        numbers = isinstance(point, list) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in point)
        if not numbers or len(point) not in (2, 3):
            raise InputError(f"{where}: point {k} is {json.dumps(point)[:40]}; expected [x, y] numbers")
    return np.array([point[:2] for point in value], np.float64)


def _to_input(xy: np.ndarray, *, image_hw: tuple[int, ...], input_hw: tuple[int, int],
              center_crop: bool) -> np.ndarray:
    """Points in the image's pixels to the model input's: through the optional centre crop and the resize."""
    h, w = image_hw[0], image_hw[1]
    left = top = 0
    if center_crop:
        side = min(h, w)
        top, left, h, w = (h - side) // 2, (w - side) // 2, side, side
    return (xy - [left, top]) * [input_hw[1] / w, input_hw[0] / h]

"""Loading user images and labels: files, folders and .zip archives with class subfolders."""

from __future__ import annotations

import hashlib
import io
import tempfile
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain, zip_longest
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, UnidentifiedImageError

from quant_core._serde import json_kind, parse_json
from quant_core.errors import ImageError, InputError
from quant_core.inputs.archives import extract_zip

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".ppm", ".pgm"})
MAX_IMAGES = 5_000
_NOTE_SUFFIXES = frozenset({".txt", ".json", ".csv", ".md"})  # skipped silently beside images
MAX_PIXELS = 50_000_000  # per image; larger declared sizes are refused before decoding


@dataclass(frozen=True)
class ImageItem:
    """One decoded image: RGB uint8 pixels [H, W, 3] and its class folder name, if any."""

    name: str
    pixels: np.ndarray
    label_name: str | None = None
    sha256: str | None = None  # of the file's bytes, when the image was read from one file (`load_images`)


@dataclass(frozen=True)
class SkippedFile:
    """A file that was not used, and why."""

    name: str
    reason: str


@dataclass(frozen=True)
class ImageSet:
    """The images of a request, in a deterministic order."""

    items: tuple[ImageItem, ...]
    skipped: tuple[SkippedFile, ...] = ()

    @property
    def labelled(self) -> bool:
        """True when every image has a class folder."""
        return bool(self.items) and all(i.label_name is not None for i in self.items)

    def digest(self) -> str:
        """Content hash of names, labels and pixels (cache key material)."""
        h = hashlib.sha256()
        for item in self.items:
            h.update(f"{item.name}\0{item.label_name}\0{item.pixels.shape}\0".encode())
            h.update(item.pixels.tobytes())
        return h.hexdigest()


@dataclass(frozen=True)
class Labels:
    """Class indices for an ImageSet, resolved against a model's class count."""

    class_names: tuple[str, ...]
    indices: tuple[int | None, ...]  # per image; None when the image has no label
    source: str  # how names were mapped to indices, in words

    @property
    def known(self) -> bool:
        """True when every image has a label."""
        return bool(self.indices) and all(i is not None for i in self.indices)


def decode_image(data: bytes, name: str) -> np.ndarray:
    """Decodes image bytes to RGB uint8 [H, W, 3].

    Handles grayscale, palette, RGBA (composited on white) and 16-bit images.

    Raises:
        ImageError: unreadable, empty, truncated or too large.
    """
    if not data:
        raise ImageError(f"{name}: empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                if image.width * image.height > MAX_PIXELS:
                    raise ImageError(
                        f"{name}: {image.width}x{image.height} pixels is over the "
                        f"{MAX_PIXELS // 1_000_000} MP limit"
                    )
                image.load()
                return _to_rgb(image)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{name}: too many pixels, over the {MAX_PIXELS // 1_000_000} MP limit") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as err:
        raise ImageError(f"{name}: not a readable image ({type(err).__name__})") from None


def _to_rgb(image: Image.Image) -> np.ndarray:
    """Converts any Pillow mode to RGB uint8."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        gray = np.clip(np.round(values * (255.0 / peak)), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode in ("P", "PA") or (image.mode in ("L", "RGB") and "transparency" in image.info):
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "RGBa", "La"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def load_images(paths: Sequence[str | Path], *, work_dir: Path | None = None) -> ImageSet:
    """Loads image files, folders and .zip archives.

    A folder or archive whose images sit in subfolders gives those images the
    subfolder name as label; loose files are unlabelled. Unreadable files are skipped
    and reported.

    Raises:
        ImageError: if no usable image is found.
        InputError: if a path does not exist or an archive is unsafe.
    """
    files: list[tuple[str, Path, str | None]] = []
    skipped: list[SkippedFile] = []
    with tempfile.TemporaryDirectory(dir=work_dir, prefix="images-") as tmp:
        for index, raw in enumerate(paths):
            path = Path(raw)
            if not path.exists():
                raise InputError(f"{path}: no such file or folder")
            if path.is_dir():
                files += scan_folder(path, path.name, skipped)
            elif path.suffix.lower() == ".zip":
                root = extract_zip(path, Path(tmp) / f"zip{index}")
                files += scan_folder(root, path.name, skipped)
            else:
                files.append((path.name, path, None))
        if len(files) > MAX_IMAGES:
            raise ImageError(f"{len(files)} images given; the limit is {MAX_IMAGES}")
        items = []
        for name, path, label in files:
            try:
                data = path.read_bytes()
                items.append(ImageItem(name, decode_image(data, name), label, hashlib.sha256(data).hexdigest()))
            except ImageError as err:
                skipped.append(SkippedFile(name, str(err).split(": ", 1)[-1]))
    if not items:
        detail = f" ({len(skipped)} unreadable: {', '.join(s.name for s in skipped[:5])})" if skipped else ""
        raise ImageError(f"no usable images found{detail}; expected PNG, JPEG, BMP, WebP, GIF or TIFF files")
    return ImageSet(tuple(items), tuple(skipped))


def scan_folder(root: Path, display: str, skipped: list[SkippedFile]) -> list[tuple[str, Path, str | None]]:
    """Lists image files under root: (display name, path, class folder or None)."""
    files = {p.relative_to(root).as_posix(): p for p in root.rglob("*") if p.is_file() and not p.is_symlink()}
    return [(name, files[rel], label) for rel, name, label in list_images(list(files), display, skipped)]


def list_images(rel_paths: Sequence[str], display: str,
                skipped: list[SkippedFile]) -> list[tuple[str, str, str | None]]:
    """(relative path, display name, class folder or None) of the image files among `rel_paths`, sorted.

    Hidden files and `__MACOSX` are ignored; other non-image files (except notes such as
    .txt, .json, .csv, .md) are added to `skipped`.
    """
    visible = sorted(p for p in rel_paths
                     if not any(part.startswith(".") or part == "__MACOSX" for part in PurePosixPath(p).parts))
    tops = {PurePosixPath(p).parts[0] for p in visible}
    # A single top-level folder holding subfolders is a wrapper (e.g. a zipped folder), not a class.
    wrapped = len(tops) == 1 and any(len(PurePosixPath(p).parts) >= 3 for p in visible)
    found = []
    for rel in visible:
        parts = PurePosixPath(rel).parts
        if wrapped and len(parts) >= 2:
            parts = parts[1:]
        name = f"{display}/{rel}"
        suffix = PurePosixPath(rel).suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            found.append((rel, name, parts[-2] if len(parts) >= 2 else None))
        elif suffix not in _NOTE_SUFFIXES:
            skipped.append(SkippedFile(name, "not an image file"))
    return found


MAX_LABELS_BYTES = 16 * 1024 * 1024  # a labels file of 21,000 ImageNet-21k names is under 1 MB


def read_labels_file(path: str | Path) -> tuple[str, ...]:
    """Reads class names: a text file (one per line) or JSON (list, or {index: name}).

    Raises:
        InputError: unreadable, oversized or inconsistent file.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_LABELS_BYTES:
            raise InputError(f"{path.name}: labels file of {size:,} bytes; expected at most {MAX_LABELS_BYTES:,}")
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path.name}: cannot read labels file ({type(err).__name__})") from None
    if path.suffix.lower() == ".json":
        return _labels_from_json(path.name, text)
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not names:
        raise InputError(f"{path.name}: labels file is empty; expected one class name per line")
    return names


def _labels_from_json(name: str, text: str) -> tuple[str, ...]:
    """Parses a JSON list of names or an {index: name} object with indices 0..N-1."""
    data = parse_json(text, what=name)
    if isinstance(data, list) and data and all(isinstance(x, str) for x in data):
        return tuple(data)
    if isinstance(data, dict) and data and all(isinstance(v, str) for v in data.values()):
        mapping = {int(k): v for k, v in data.items() if k.isascii() and k.isdigit() and len(k) < 10}
        if len(mapping) == len(data) and sorted(mapping) == list(range(len(mapping))):
            return tuple(mapping[i] for i in range(len(mapping)))
    raise InputError(f"{name}: expected a JSON list of class names or an object {{\"0\": \"name\", ...}} "
                     f"with indices 0 to N-1, got {_json_detail(data)}")


def _json_detail(data: object) -> str:
    """What a labels JSON holds instead of names: its kind, or its first entry that is not a name."""
    values = data if isinstance(data, list) else list(data.values()) if isinstance(data, dict) else []
    odd = [v for v in values if not isinstance(v, str)][:1]
    return f"{json_kind(data)} holding {json_kind(odd[0])}" if odd else json_kind(data)


def resolve_labels(images: ImageSet, num_classes: int, class_names: Sequence[str] | None = None) -> Labels:
    """Maps the images' class folder names to the model's class indices (see `resolve_label_names`)."""
    return resolve_label_names([i.label_name for i in images.items], num_classes, class_names)


def resolve_label_names(label_names: Sequence[str | None], num_classes: int,
                        class_names: Sequence[str] | None = None) -> Labels:
    """Maps class folder names (one per image, None when unlabelled) to the model's class indices.

    With a labels file, folder names are matched to its names (or read as indices);
    without one, all-numeric folder names are indices, otherwise folders are taken in
    alphabetical order (the Keras `image_dataset_from_directory` convention).

    Raises:
        ImageError: when names and the model's class count cannot be reconciled.
    """
    if class_names is not None and len(class_names) != num_classes:
        raise ImageError(
            f"the labels file has {len(class_names)} names but the model has {num_classes} classes"
        )
    folders = sorted({n for n in label_names if n is not None})
    names = tuple(class_names) if class_names is not None else None
    if not folders:
        return Labels(names or _default_names(num_classes), (None,) * len(label_names), "no labels")
    if names is not None:
        lookup = {str(k): k for k in range(num_classes)} | {n: k for k, n in enumerate(names)}
        source = "folder names matched to the labels file"
    elif all(f.isdecimal() for f in folders):
        lookup, source = {f: int(f) for f in folders}, "folder names read as class indices"
    else:
        lookup = {f: k for k, f in enumerate(folders)}
        source = "folders in alphabetical order (Keras convention)"
        names = tuple(folders) + tuple(f"class {k}" for k in range(len(folders), num_classes))
    bad = [f for f in folders if lookup.get(f, num_classes) >= num_classes]
    if bad:
        raise ImageError(
            f"class folder(s) {', '.join(bad[:5])} do not match any of the model's {num_classes} classes; "
            "name folders after the labels file's names or by class index"
        )
    indices = tuple(None if n is None else lookup[n] for n in label_names)
    return Labels(names or _default_names(num_classes), indices, source)


def class_counts(labels: Labels) -> tuple[tuple[str, int], ...]:
    """Images per class, in class-index order (the labels file's, i.e. the model output's); unlabelled last.

    Only classes with at least one image are listed.
    """
    counts = Counter(labels.indices)
    ordered = [(labels.class_names[k], counts[k]) for k in sorted(k for k in counts if k is not None)]
    return tuple(ordered + ([("unlabelled", counts[None])] if None in counts else []))


def spread_over_classes(indices: Sequence[int | None], *, limit: int) -> tuple[int, ...]:
    """Positions of up to `limit` images taken round-robin over classes: a preview that shows every class.

    Classes go in index order (unlabelled images last, as one group): the first image of
    each class, then the second of each, and so on; within a class, images keep their order.
    """
    groups: dict[int | None, list[int]] = {}
    for position, index in enumerate(indices):
        groups.setdefault(index, []).append(position)
    queues = [groups[k] for k in sorted(groups, key=lambda k: (k is None, k or 0))]
    rounds = chain.from_iterable(zip_longest(*queues))
    return tuple(p for p in rounds if p is not None)[:limit]


def _default_names(num_classes: int) -> tuple[str, ...]:
    """Names used when nothing better is known: the index as text."""
    return tuple(str(k) for k in range(num_classes))

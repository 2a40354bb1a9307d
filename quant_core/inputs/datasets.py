"""Image sets of any size, read as a stream: folders of class folders, .zip and .tar archives.

A `Dataset` lists its images (name, class folder, where the bytes are) without reading
them, so it is small, picklable and can be cut into shards that other processes or
machines read on their own (the path must be reachable there: shared storage). Images are
decoded one at a time by whoever evaluates a shard: a set of 50,000 photos is never in
memory at once. Archives are read in place, never extracted.
"""

from __future__ import annotations

import enum
import os
import tarfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from quant_core.errors import ImageError, InputError
from quant_core.inputs.images import (IMAGE_SUFFIXES, ImageItem, ImageSet, SkippedFile, decode_image, list_images,
                                      resolve_label_names, scan_folder, spread_over_classes)

MAX_FILE_BYTES = 64 * 1024**2  # one image file; a larger member of an archive is skipped unread


class Container(enum.StrEnum):
    """Where an entry's bytes are."""

    FILE = "file"  # a file on disk (`source` is its path)
    ZIP = "zip"  # a member of a .zip archive
    TAR = "tar"  # a member of a .tar archive (compressed or not)


@dataclass(frozen=True)
class Entry:
    """One image of a dataset, not read yet."""

    name: str  # shown to the user: the folder or archive name, then the path inside it
    label_name: str | None  # its class folder, if any
    container: Container
    source: str  # absolute path of the file, or of the archive holding it
    member: str = ""  # the member's name inside the archive


@dataclass(frozen=True)
class Dataset:
    """The images of one or more paths, in a deterministic order, with the files that are not images."""

    entries: tuple[Entry, ...]
    skipped: tuple[SkippedFile, ...] = ()
    description: str = ""  # the paths, as the user gave them

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def labelled(self) -> bool:
        """True when every image has a class folder."""
        return bool(self.entries) and all(e.label_name is not None for e in self.entries)

    @property
    def classes(self) -> tuple[str, ...]:
        """Its class folders' names, sorted."""
        return tuple(sorted({e.label_name for e in self.entries if e.label_name is not None}))

    def shards(self, size: int) -> tuple[tuple[int, int], ...]:
        """(start, stop) ranges of at most `size` images covering the dataset in order."""
        size = max(1, size)
        return tuple((start, min(start + size, len(self))) for start in range(0, len(self), size))

    def sample(self, limit: int) -> ImageSet:
        """Up to `limit` images spread over the classes, decoded (unreadable ones are skipped and named).

        The sample keeps the dataset's order, so the same dataset always gives the same sample.
        """
        labels = {name: k for k, name in enumerate(sorted({e.label_name for e in self.entries if e.label_name}))}
        picked = sorted(spread_over_classes([labels.get(e.label_name or "") for e in self.entries], limit=limit))
        items, skipped = [], list(self.skipped)
        for index, decoded in decode_entries(self, picked):
            entry = self.entries[index]
            if isinstance(decoded, SkippedFile):
                skipped.append(decoded)
            else:
                items.append(ImageItem(entry.name, decoded, entry.label_name))
        if not items:
            raise ImageError(f"none of the {len(picked)} images sampled from {self.description} could be read")
        return ImageSet(tuple(items), tuple(skipped))


@dataclass(frozen=True)
class ClassFit:
    """How a dataset's class folders map onto a model's classes, by the rule every evaluation applies."""

    folders: int  # distinct class folders (0: an unlabelled set)
    named: int  # folders named after one of the model's classes
    indexed: int  # the other folders whose names are numbers (read as class indices)
    source: str  # how the folders are read, in words ("" when refused)
    refusal: str | None = None  # why the set cannot be scored against the model; None when every folder maps

    @property
    def fits(self) -> bool:
        return self.refusal is None

    @property
    def rank(self) -> tuple[int, int, int]:
        """Sort key, best first: sets that fit, then most folders named after the model's classes, then most folders."""
        return (0, -self.named, -self.folders) if self.fits else (1, 0, 0)

    @property
    def summary(self) -> str:
        """A few words for a list of datasets."""
        if not self.fits:
            return "its classes are not the model's"
        if not self.folders:
            return "unlabelled: agreement only"
        if self.named == self.folders:
            return f"{self.folders} of the model's classes"
        if self.indexed == self.folders:
            return f"{self.folders} folders read as class indices"
        return f"{self.folders} class folders, {self.source}"


def class_fit(folders: Iterable[str | None], *, num_classes: int,
              class_names: Sequence[str] | None = None) -> ClassFit:
    """How class folders map onto a model's classes, without reading an image.

    The rule is `images.resolve_label_names`, the one that refuses a set on the command line
    (`compare --images`, `tune`) and in `evaluate_dataset`: a set whose folders it cannot map
    gets its message as `refusal`.
    """
    names = sorted({f for f in folders if f is not None})
    known = set(class_names or ())
    named = sum(1 for f in names if f in known)
    indexed = sum(1 for f in names if f not in known and f.isdecimal())
    try:
        labels = resolve_label_names(names, num_classes, class_names)
    except ImageError as err:
        return ClassFit(len(names), named, indexed, "", str(err))
    return ClassFit(len(names), named, indexed, labels.source if names else "")


def open_dataset(paths: Sequence[str | Path]) -> Dataset:
    """Lists the images of files, folders, .zip and .tar archives without reading them.

    As with uploads, an image in a subfolder takes the subfolder's name as its class, and a
    single top-level folder holding class folders is a wrapper, not a class.

    Raises:
        InputError: a path that does not exist, or an archive that cannot be read.
        ImageError: no image found.
    """
    entries: list[Entry] = []
    skipped: list[SkippedFile] = []
    for raw in paths:
        path = Path(raw).resolve()
        if not path.exists():
            raise InputError(f"{raw}: no such file or folder")
        if path.is_dir():
            for name, file, label in scan_folder(path, path.name, skipped):
                entries.append(Entry(name, label, Container.FILE, str(file)))
        elif zipfile.is_zipfile(path):
            for rel, name, label in list_images(_zip_members(path), path.name, skipped):
                entries.append(Entry(name, label, Container.ZIP, str(path), rel))
        elif _is_tar(path):
            for rel, name, label in list_images(_tar_members(path), path.name, skipped):
                entries.append(Entry(name, label, Container.TAR, str(path), rel))
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            entries.append(Entry(path.name, None, Container.FILE, str(path)))
        else:
            skipped.append(SkippedFile(path.name, "not an image, folder, .zip or .tar"))
    description = ", ".join(str(p) for p in paths)
    if not entries:
        raise ImageError(f"no images found in {description}; expected PNG, JPEG, BMP, WebP, GIF or TIFF files, "
                         "in class folders for labels")
    return Dataset(tuple(entries), tuple(skipped), description)


def decode_entries(dataset: Dataset, indices: Sequence[int]) -> Iterator[tuple[int, np.ndarray | SkippedFile]]:
    """(index, RGB uint8 pixels or SkippedFile) for these entries in index order, one image in memory at a time.

    Each archive is opened once per call; a shard of a tar is then read forwards.
    """
    with ExitStack() as stack:
        opened: dict[str, zipfile.ZipFile | tarfile.TarFile] = {}
        for index in sorted(indices):
            entry = dataset.entries[index]
            try:
                data = _read(entry, opened, stack)
                yield index, decode_image(data, entry.name)
            except InputError as err:
                yield index, SkippedFile(entry.name, str(err).split(": ", 1)[-1])


def _zip_members(path: Path) -> list[str]:
    """The regular files of a .zip (no absolute paths, `..` or encrypted entries)."""
    try:
        with zipfile.ZipFile(path) as zf:
            return [i.filename for i in zf.infolist()
                    if not i.is_dir() and not i.flag_bits & 0x1 and _safe(i.filename)]
    except (zipfile.BadZipFile, OSError, zlib.error) as err:
        raise InputError(f"{path.name}: not a readable .zip archive ({err})") from None


def _is_tar(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


def _tar_members(path: Path) -> list[str]:
    """The regular files of a .tar (links, devices and unsafe paths are left out)."""
    try:
        with tarfile.open(path, "r:*") as tf:
            return [m.name for m in tf if m.isreg() and _safe(m.name)]
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise InputError(f"{path.name}: not a readable .tar archive ({err})") from None


def _safe(name: str) -> bool:
    path = PurePosixPath(name.replace("\\", "/"))
    return not name.startswith(("/", "\\")) and ".." not in path.parts


def _read(entry: Entry, opened: dict, stack: ExitStack) -> bytes:
    """The entry's bytes (at most MAX_FILE_BYTES), from disk or from its already opened archive."""
    too_big = ImageError(f"{entry.name}: over the {MAX_FILE_BYTES / 1024**2:g} MB limit for one image")
    try:
        if entry.container is Container.FILE:
            if os.path.getsize(entry.source) > MAX_FILE_BYTES:
                raise too_big
            return Path(entry.source).read_bytes()
        if entry.source not in opened:
            opener = zipfile.ZipFile if entry.container is Container.ZIP else tarfile.open
            opened[entry.source] = stack.enter_context(opener(entry.source))
        archive = opened[entry.source]
        if isinstance(archive, zipfile.ZipFile):
            if archive.getinfo(entry.member).file_size > MAX_FILE_BYTES:
                raise too_big
            with archive.open(entry.member) as f:
                return f.read(MAX_FILE_BYTES + 1)
        member = archive.getmember(entry.member)
        if member.size > MAX_FILE_BYTES:
            raise too_big
        f = archive.extractfile(member)
        return f.read() if f is not None else b""
    except (OSError, KeyError, EOFError, zipfile.BadZipFile, tarfile.TarError, zlib.error,
            RuntimeError, NotImplementedError) as err:  # the last two: encrypted or Deflate64 zip members
        raise ImageError(f"{entry.name}: cannot be read ({type(err).__name__})") from None

"""What the user works on: a bundled sample or their uploads, as files on disk."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from quant_core.cache import cache_key, content_sha256
from quant_core.errors import InputError
from quant_core.inputs.images import IMAGE_SUFFIXES
from quant_core.inputs.models import detect_format

IMAGE_TYPES = ", ".join(sorted(IMAGE_SUFFIXES)) + ", or a .zip of them"
LABEL_SUFFIXES = (".txt", ".json")

REPO = Path(__file__).resolve().parents[1]
SAMPLES_DIR = REPO / "sample_models"
MAX_UPLOAD_MB = 200  # per file; also server.maxUploadSize in .streamlit/config.toml
MAX_TOTAL_UPLOAD_MB = 500  # all files of one upload together


@dataclass(frozen=True)
class Sample:
    """A bundled model with its images and labels."""

    name: str
    description: str
    model: Path
    images: Path
    labels: Path | None  # class names: classifiers only
    task: str = "classification"


@dataclass(frozen=True)
class Inputs:
    """The files one comparison runs on."""

    title: str
    model: Path
    images: tuple[Path, ...]
    labels: Path | None
    sample: str | None = None  # the sample's name, for shareable links
    folder: Path | None = None  # the session's private folder holding uploads (archives unpack here)
    # files_digest of every file, taken once when made so reruns never re-read them (an upload is a new Inputs)
    digest: str = field(kw_only=True)


def files_digest(model: Path, images: tuple[Path, ...], labels: Path | None) -> str:
    """Hash of every input file's role, name and bytes (a folder: each file under it, by relative name)."""
    roots = [("model", model), *(("images", p) for p in images), *([("labels", labels)] if labels else [])]
    return cache_key([(role, root.name, content_sha256(root)) for role, root in roots])


def samples() -> tuple[Sample, ...]:
    """The bundled samples in samples.json order; the first (the ImageNet MobileNetV2) is the default."""
    entries = json.loads((SAMPLES_DIR / "samples.json").read_text())
    return tuple(Sample(e["name"], e["description"], SAMPLES_DIR / e["file"], SAMPLES_DIR / e["images_dir"],
                        SAMPLES_DIR / e["classes_file"] if e.get("classes_file") else None,
                        e.get("task", "classification")) for e in entries)


def sample_inputs(name: str | None = None) -> Inputs:
    """Inputs for the named sample (the default one when None or unknown)."""
    chosen = next((s for s in samples() if s.name == name), samples()[0])
    images = (chosen.images,)
    return Inputs(f"bundled sample {chosen.name}", chosen.model, images, chosen.labels, chosen.name,
                  digest=files_digest(chosen.model, images, chosen.labels))


def safe_name(name: str) -> str:
    """A file name that cannot leave its folder."""
    base = Path(name.replace("\\", "/")).name
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", base).lstrip(".")
    return cleaned or "upload"


def check_types(model: str, images: list[str], labels: str | None) -> None:
    """Refuses, in one line naming the accepted types, any file whose type the workbench does not read.

    The uploaders accept any file so that a wrong type gets this message, not a silent red icon.
    """
    detect_format(Path(safe_name(model)))
    bad = [name for name in images if Path(name).suffix.lower() not in IMAGE_SUFFIXES | {".zip"}]
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise InputError(f"{', '.join(bad[:3])}{more}: not an image; expected {IMAGE_TYPES}")
    if labels is not None and Path(labels).suffix.lower() not in LABEL_SUFFIXES:
        raise InputError(f"{labels}: not a labels file; expected .txt (one class name per line) or .json")


def save_uploads(folder: Path, model: tuple[str, bytes], images: list[tuple[str, bytes]],
                 labels: tuple[str, bytes] | None) -> Inputs:
    """Writes uploaded files into a fresh private folder and describes them as Inputs.

    Raises:
        InputError: a file of a type the workbench does not read, or the files together exceed
            MAX_TOTAL_UPLOAD_MB (nothing is written).
    """
    check_types(model[0], [name for name, _ in images], labels[0] if labels else None)
    total = len(model[1]) + sum(len(d) for _, d in images) + (len(labels[1]) if labels else 0)
    if total > MAX_TOTAL_UPLOAD_MB * 1024 * 1024:
        raise InputError(f"the files add up to {total / 1024 / 1024:.0f} MB; the limit for one upload is "
                         f"{MAX_TOTAL_UPLOAD_MB} MB in all (each file up to {MAX_UPLOAD_MB} MB)")
    model_path = folder / "model" / safe_name(model[0])
    model_path.parent.mkdir(parents=True, exist_ok=True)
    model_path.write_bytes(model[1])
    image_dir = folder / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, (name, data) in enumerate(images):
        path = image_dir / f"{k:04d}" / safe_name(name)  # one folder each: names stay as uploaded
        path.parent.mkdir()
        path.write_bytes(data)
        paths.append(path)
    labels_path = None
    if labels is not None:
        labels_path = folder / "labels" / safe_name(labels[0])
        labels_path.parent.mkdir(parents=True, exist_ok=True)
        labels_path.write_bytes(labels[1])
    saved = tuple(paths)
    return Inputs(f"your model {model_path.name}", model_path, saved, labels_path, folder=folder,
                  digest=files_digest(model_path, saved, labels_path))

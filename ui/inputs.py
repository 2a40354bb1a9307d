"""What the user works on: a bundled sample or their uploads, as files on disk."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from quant_core import Preprocessing, load_images
from quant_core.boxes import read_boxes
from quant_core.cache import cache_key, content_sha256
from quant_core.errors import InputError
from quant_core.inputs.archives import extract_zip
from quant_core.inputs.images import IMAGE_SUFFIXES
from quant_core.inputs.models import detect_format
from quant_core.outputs import truth_of
from quant_core.tasks import OutputSpec, Task

IMAGE_TYPES = ", ".join(sorted(IMAGE_SUFFIXES)) + ", or a .zip of them"
LABEL_SUFFIXES = (".txt", ".json")
TRUTH_FORMAT = ("PNG masks named like the images (0/255 or class indices, at the image's or the output's size; "
                "several files or a .zip), or one .json of points {\"image name\": [[x, y], ...]} in the "
                "images' pixels")
BOX_TRUTH_FORMAT = ("YOLO .txt files named like the images, a line \"class cx cy w h\" per object in shares of the "
                    "image (several files or a .zip; an image without one has no objects), or one COCO .json of "
                    "detection annotations")

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
    truth: Path | None = None  # ground truth bundled with the images (a detector's YOLO .txt files)


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
    # ground truth of a segmenter's or landmark model's main output: one folder of PNG masks or one JSON file,
    # in a truth-* folder of its own inside `folder` (`save_truth`); () without
    truth: tuple[Path, ...] = field(default=(), kw_only=True)


def files_digest(model: Path, images: tuple[Path, ...], labels: Path | None, truth: tuple[Path, ...] = ()) -> str:
    """Hash of every input file's role, name and bytes (a folder: each file under it, by relative name)."""
    roots = [("model", model), *(("images", p) for p in images), *([("labels", labels)] if labels else []),
             *(("truth", p) for p in truth)]
    return cache_key([(role, root.name, content_sha256(root)) for role, root in roots])


def samples() -> tuple[Sample, ...]:
    """The bundled samples in samples.json order; the first (the ImageNet MobileNetV2) is the default."""
    entries = json.loads((SAMPLES_DIR / "samples.json").read_text())
    return tuple(Sample(e["name"], e["description"], SAMPLES_DIR / e["file"], SAMPLES_DIR / e["images_dir"],
                        SAMPLES_DIR / e["classes_file"] if e.get("classes_file") else None,
                        e.get("task", "classification"), SAMPLES_DIR / e["truth_dir"] if e.get("truth_dir") else None)
                 for e in entries)


def sample_inputs(name: str | None = None) -> Inputs:
    """Inputs for the named sample (the default one when None or unknown)."""
    chosen = next((s for s in samples() if s.name == name), samples()[0])
    images = (chosen.images,)
    truth = (chosen.truth,) if chosen.truth else ()
    return Inputs(f"bundled sample {chosen.name}", chosen.model, images, chosen.labels, chosen.name,
                  digest=files_digest(chosen.model, images, chosen.labels, truth), truth=truth)


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


def truth_format(task: Task) -> str:
    """The ground truth a model of this task is scored against, in words."""
    return BOX_TRUTH_FORMAT if task is Task.DETECTION else TRUTH_FORMAT


def save_truth(folder: Path, files: Sequence[tuple[str, bytes]], task: Task = Task.SEGMENTATION) -> tuple[Path, ...]:
    """Writes uploaded ground truth into a new truth-* folder inside `folder`; returns what the engine reads.

    PNG masks, or a detector's YOLO .txt files (and those in .zip archives, unpacked), go into
    that folder, which is returned alone; one .json (points, or a detector's COCO boxes) is
    returned as its file.

    Raises:
        InputError: no file, a file of a type the task's ground truth is not, or a .json beside
            other files (nothing is left behind).
    """
    kinds = {Path(name).suffix.lower() for name, _ in files}
    each = (".txt", ".zip", ".json") if task is Task.DETECTION else (".png", ".zip", ".json")
    bad = [name for name, _ in files if Path(name).suffix.lower() not in each]
    if bad or not files:
        raise InputError(f"{', '.join(bad[:3]) or 'nothing chosen'}: not ground truth; expected "
                         f"{truth_format(task)}")
    if ".json" in kinds and len(files) > 1:
        raise InputError("ground truth is one .json file alone, not beside other files nor several .json files")
    dest = Path(tempfile.mkdtemp(prefix="truth-", dir=folder))
    try:
        for k, (name, data) in enumerate(files):
            path = dest / safe_name(name)
            if path.suffix.lower() == ".zip":
                archive = folder / f"{dest.name}-{k}.zip"  # outside dest: only the masks are read
                archive.write_bytes(data)
                try:
                    extract_zip(archive, dest / f"zip-{k:02d}")
                finally:
                    archive.unlink()
            else:
                path.write_bytes(data)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return (dest / safe_name(files[0][0]),) if ".json" in kinds else (dest,)


def drop_truth(inputs: Inputs) -> None:
    """Removes the inputs' uploaded ground-truth files (their truth-* folder); a sample's bundled truth stays."""
    for path in inputs.truth:
        folder = path if path.is_dir() else path.parent
        if inputs.folder is not None and folder.parent == inputs.folder and folder.name.startswith("truth-"):
            shutil.rmtree(folder, ignore_errors=True)


def with_truth(inputs: Inputs, truth: tuple[Path, ...], *, folder: Path | None = None) -> Inputs:
    """The same inputs with this ground truth (() for none), their digest taken anew; `folder` if they had none."""
    return replace(inputs, truth=truth, folder=inputs.folder or folder,
                   digest=files_digest(inputs.model, inputs.images, inputs.labels, truth))


def check_truth(inputs: Inputs, truth: Sequence[Path], specs: Sequence[OutputSpec], task: Task,
                preprocessing: Preprocessing) -> None:
    """Reads the ground truth as the engine will, against the images and the main output (a detector: its boxes).

    Raises:
        InputError: ground truth that does not fit the images or the task, in the engine's words.
    """
    paths = [str(p) for p in truth]
    images = load_images(inputs.images, work_dir=inputs.folder)
    if task is Task.CLASSIFICATION:
        raise InputError("a classifier is scored against its labels, not against masks, points or boxes")
    if task is Task.DETECTION:  # the decoder (its classes, its input size) is checked again when a comparison runs
        read_boxes(paths, images, preprocessing, input_size=(preprocessing.width, preprocessing.height))
    else:
        truth_of(paths, specs, images, preprocessing)


def add_truth(inputs: Inputs, files: Sequence[tuple[str, bytes]], *, folder: Path, specs: Sequence[OutputSpec],
              preprocessing: Preprocessing, task: Task = Task.SEGMENTATION) -> Inputs:
    """The inputs with this uploaded ground truth, saved in `folder` and read by the engine against the main output.

    The inputs' earlier ground truth stays until the caller drops it (`drop_truth`).

    Raises:
        InputError: files that are not ground truth or do not fit the images and the main output, in
            the engine's words (quant_core.inputs.ground_truth); nothing is left behind.
    """
    truth = save_truth(folder, files, task)
    try:
        check_truth(inputs, truth, specs, task, preprocessing)
    except BaseException:
        drop_truth(replace(inputs, truth=truth, folder=folder))
        raise
    return with_truth(inputs, truth, folder=folder)


def refit_truth(inputs: Inputs, specs: Sequence[OutputSpec], task: Task, preprocessing: Preprocessing) -> \
        tuple[Inputs, str | None]:
    """The inputs with their ground truth checked again against the model as read now (other roles or task):
    unchanged when it still fits, else without it and why, in one line.

    Ground truth is read against the main output, so a reading that makes another output main, or the
    model a classifier, can leave masks or points with nothing to score.
    """
    if not inputs.truth:
        return inputs, None
    try:
        check_truth(inputs, inputs.truth, specs, task, preprocessing)
    except InputError as err:  # its files stay in the session's folder: a worker preparing the model may read them
        return with_truth(inputs, ()), f"The ground truth ({truth_said(inputs)}) was removed: {err}."
    return inputs, None


def truth_said(inputs: Inputs) -> str:
    """The ground truth in use, in a few words: "3 PNG masks", "12 YOLO .txt files" or "points.json"."""
    if not inputs.truth:
        return "none"
    path = inputs.truth[0]
    if not path.is_dir():
        return path.name
    masks = sum(1 for f in path.rglob("*") if f.suffix.lower() == ".png")
    return f"{masks} PNG masks" if masks else f"{sum(1 for _ in path.rglob('*.txt'))} YOLO .txt files"

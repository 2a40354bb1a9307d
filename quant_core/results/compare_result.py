"""Result types: frozen dataclasses that reports, charts and the cache consume."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quant_core._serde import from_jsonable, to_jsonable
from quant_core.boxes import Decoder, ImageBoxes, SharedScale
from quant_core.cache import ModelStore
from quant_core.env import Environment
from quant_core.errors import InputError
from quant_core.fidelity import OutputFidelity
from quant_core.kernels import KernelCheck
from quant_core.inputs.images import SkippedFile
from quant_core.inputs.models import ModelInfo, OutputKind
from quant_core.inputs.preprocess import Preprocessing
from quant_core.modes import Mode
from quant_core.ops import OpInventory
from quant_core.recipe import Recipe
from quant_core.runner import Latency, Memory
from quant_core.tasks import OutputSpec, Task
from quant_core.views import OutputViews


class Status(enum.StrEnum):
    """Whether a variant was built and passed its checks."""

    OK = "ok"
    FAILED = "failed"


@dataclass(frozen=True)
class Prediction:
    """One class of a top-k list."""

    index: int
    label: str
    prob: float


@dataclass(frozen=True)
class CalibrationImage:
    """One image a calibrated variant was calibrated on: enough to find it again and check it is the same."""

    name: str  # as the workbench names it: the file name, or its path under the folder or archive given
    sha256: str | None  # of the file's bytes (None when it came from a whole dataset's archive)
    pixels_sha256: str  # of its decoded RGB uint8 pixels [H, W, 3], row by row: what preprocessing starts from


@dataclass(frozen=True)
class VariantResult:
    """Everything measured for one variant.

    Agreement and error figures compare against the float32 .tflite; `*_source`
    figures against the original model. `topk[i]` belongs to image i.

    For a model that is not a classifier (`CompareResult.task`), `top1_agreement` holds the
    task's agreement with float32 (`quant_core.outputs.AGREEMENT`: mask IoU, PCK at 5 %,
    nearest-neighbour agreement, cosine), `accuracy` its main output against ground truth when
    given (mask IoU, mean IoU of a class map, or PCK at 5 %), the class-score fields stay
    empty and `outputs` has the rest.
    """

    name: str
    mode: Mode
    recipe: Recipe
    status: Status
    error: str | None = None
    warning: str | None = None  # set on usable variants whose predictions differ a lot from float32
    backend_settings: dict[str, Any] = field(default_factory=dict)  # what the backend was told: the build's record
    size_bytes: int | None = None
    size_ratio: float | None = None
    input_dtype: str | None = None
    output_dtype: str | None = None
    latency: Latency | None = None
    memory: Memory | None = None  # measured at batch 1 (None off glibc)
    top1_agreement: float | None = None
    top1_agreement_source: float | None = None
    top5_agreement: float | None = None  # float32's top-1 among this variant's top 5
    accuracy: float | None = None
    top5_accuracy: float | None = None
    mean_abs_diff: float | None = None
    kl_divergence: float | None = None
    ops: OpInventory | None = None
    top1: tuple[int, ...] = ()
    topk: tuple[tuple[Prediction, ...], ...] = ()
    tflite_sha256: str | None = None  # the model's content key: its bytes come from a ModelStore
    build_seconds: float | None = None
    calibration_samples: int | None = None
    outputs: tuple[OutputFidelity, ...] = ()  # every output against float32's: whole, per channel, the task's metrics
    views: tuple[OutputViews, ...] = ()  # masks and points on the first images, to draw beside float32's
    detections: tuple[ImageBoxes, ...] = ()  # a detector's boxes on every image, down to the decoder's floor
    calibration_images: tuple[CalibrationImage, ...] = ()  # the images calibration fed, in the order it fed them
    kernels: KernelCheck | None = None  # the same images on the builtin kernels without XNNPACK, and in TFLite Micro

    @property
    def ok(self) -> bool:
        """True when the variant was built and passed its checks."""
        return self.status == Status.OK

    def tflite_bytes(self, models: ModelStore) -> bytes:
        """The variant's .tflite model, fetched by its content key."""
        if not self.ok or self.tflite_sha256 is None:
            raise InputError(f"variant {self.name} has no model ({self.error})")
        return models.model_bytes(self.tflite_sha256)

    def recipe_record(self, model: ModelInfo, preprocessing: Preprocessing) -> dict[str, Any]:
        """What is written beside the variant's .tflite: enough to rebuild it exactly.

        `calibration_images` lists the images calibration fed, in its order, each with the
        sha256 of its file and of its decoded pixels (`quantize --recipe` checks the images it
        is given against them); empty for a mode that calibrates nothing or on random data.
        """
        return {"model": model.name, "model_sha256": model.sha256, "variant": self.name,
                "recipe": self.recipe.to_dict(), "backend_settings": self.backend_settings,
                "preprocessing": preprocessing.to_dict(), "calibration_samples": self.calibration_samples,
                "calibration_images": [to_jsonable(i) for i in self.calibration_images],
                "tflite_sha256": self.tflite_sha256}

    def files(self, stem: str, model: ModelInfo, preprocessing: Preprocessing,
              models: ModelStore) -> dict[str, bytes]:
        """The variant's files by name: `<stem>.tflite` and, beside it, `<stem>.recipe.json` and `<stem>.recipe.py`.

        The .py is the recipe as code (`quant_core.recipe_code`): a standalone script that
        rebuilds the same .tflite with TensorFlow or the LiteRT Quantizer alone.
        """
        from quant_core.recipe_code import recipe_script  # pylint: disable=import-outside-toplevel

        record = json.dumps(self.recipe_record(model, preprocessing), indent=2, sort_keys=True) + "\n"
        script = recipe_script(variant=self, model=model, preprocessing=preprocessing, stem=stem)
        return {f"{stem}.tflite": self.tflite_bytes(models), f"{stem}.recipe.json": record.encode(),
                f"{stem}.recipe.py": script.encode()}


@dataclass(frozen=True)
class ImageRecord:
    """One evaluated image."""

    file: str
    label: str | None
    label_index: int | None


@dataclass(frozen=True)
class CalibrationInfo:
    """What calibrated the calibrated variants."""

    source: str
    available_images: int
    what_if: bool  # True when random data was used: numbers then mislead on purpose


@dataclass(frozen=True)
class CompareResult:
    """A full side-by-side comparison of variants of one model on one image set."""

    model: ModelInfo
    output_kind: OutputKind
    environment: Environment
    preprocessing: Preprocessing
    class_names: tuple[str, ...]
    labels_source: str
    images: tuple[ImageRecord, ...]
    skipped: tuple[SkippedFile, ...]
    variants: tuple[VariantResult, ...]
    calibration: CalibrationInfo
    source_accuracy: float | None
    source_top5_accuracy: float | None
    request_key: str
    seconds: float
    scored_images: int | None = None  # agreement and accuracy cover this many images (a whole dataset), not `images`
    task: Task = Task.CLASSIFICATION  # what the model does; a classifier's comparison reads class scores
    output_specs: tuple[OutputSpec, ...] = ()  # what each output is, and why the workbench thinks so
    truth_source: str = ""  # a non-classifier's ground truth (its accuracy: mask IoU or PCK@5% against it)
    decoder: Decoder | None = None  # a detector's: how its outputs became the boxes compared (quant_core.boxes)
    shared_scale: SharedScale | None = None  # a detector output mixing pixel boxes and scores: what int8 breaks

    @property
    def fidelity_images(self) -> int:
        """How many images agreement and accuracy are measured on."""
        return len(self.images) if self.scored_images is None else self.scored_images

    @property
    def has_top5(self) -> bool:
        """True when top-5 figures say something (more than five classes)."""
        return len(self.class_names) > 5

    @property
    def labelled(self) -> bool:
        """True when accuracy could be computed: every image labelled, or a non-classifier's ground truth."""
        return bool(self.truth_source) or (bool(self.images) and all(i.label_index is not None for i in self.images))

    @property
    def baseline(self) -> VariantResult | None:
        """The float32 variant every other is compared with (None if it failed)."""
        return next((v for v in self.variants if v.mode is Mode.FLOAT32 and v.ok), None)

    def variant(self, name: str) -> VariantResult:
        """The variant called `name` (a mode value for CLI requests)."""
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(f"no variant {name!r}; have {', '.join(v.name for v in self.variants)}")

    def file_stem(self, variant: VariantResult) -> str:
        """The name a variant's files get: `<model>_<variant>`."""
        return f"{self.model.name}_{variant.name}"

    def variant_files(self, variant: VariantResult, models: ModelStore) -> dict[str, bytes]:
        """One built variant's .tflite, recipe JSON and recipe script, by file name."""
        return variant.files(self.file_stem(variant), self.model, self.preprocessing, models)

    def files(self, models: ModelStore) -> dict[str, bytes]:
        """Every built variant's .tflite, recipe JSON and recipe script, by file name (what `save` writes)."""
        return {name: data for v in self.variants if v.ok for name, data in self.variant_files(v, models).items()}

    def save(self, out_dir: Path, models: ModelStore) -> dict[str, str]:
        """Writes every built variant's .tflite with its recipe JSON and script beside it; returns the .tflite paths.

        Raises:
            MissingModelError: a model is no longer in `models`.
        """
        written = write_files(Path(out_dir), self.files(models))
        return {v.name: str(written[f"{self.file_stem(v)}.tflite"]) for v in self.variants if v.ok}

    def to_dict(self) -> dict[str, Any]:
        """Lossless JSON-ready dict (see `report.report_dict` for the published report)."""
        return to_jsonable(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CompareResult:
        """Inverse of `to_dict`; results stored before a key was renamed (`engine_settings`) read the same."""
        variants = data.get("variants")
        if isinstance(variants, list):
            data = {**data, "variants": [_renamed_keys(v) for v in variants]}
        return from_jsonable(cls, data)


def _renamed_keys(variant: Any) -> Any:
    """A stored variant with `engine_settings` (and its `engine` entry) under their names now, `backend`."""
    if not isinstance(variant, dict) or "engine_settings" not in variant:
        return variant
    renamed = {k: v for k, v in variant.items() if k != "engine_settings"}
    settings = variant["engine_settings"]
    if isinstance(settings, dict) and "engine" in settings and "backend" not in settings:
        settings = {("backend" if k == "engine" else k): v for k, v in settings.items()}
    renamed.setdefault("backend_settings", settings)
    return renamed


def write_files(out_dir: Path, files: dict[str, bytes]) -> dict[str, Path]:
    """Writes named files into a folder (created if needed); returns their paths. The one writer of model files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, data in files.items():
        paths[name] = out_dir / name
        paths[name].write_bytes(data)
    return paths

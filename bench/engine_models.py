"""Model preparation for the engine benchmarks: the bundled samples, workbenches and quant_core's builds.

Every benchmark starts from here: the ImageNet MobileNetV2 sample and its 22 labelled
photos, a `Workbench` opened on them with the preprocessing quant_core infers, and builds
with an empty artifact cache each time, so no measured build is a cache hit.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from engine_report import timed  # noqa: E402
from quant_core import (ArtifactCache, Backend, CompareOptions, Mode, Recipe, Workbench, _quiet,  # noqa: E402
                        load_images, read_labels_file)
from quant_core.builders import CalibratedModels  # noqa: E402

SAMPLES = REPO / "sample_models"
MODEL = SAMPLES / "mobilenet_v2_imagenet.keras"
IMAGES = SAMPLES / "imagenet_images"  # 22 labelled photos, one folder per class name
LABELS = SAMPLES / "imagenet_labels.txt"


def resolved(mode: Mode, *, backend: Backend | None = None, calibration_count: int = 100,
             per_channel: bool = True) -> Recipe:
    """The recipe quant_core builds from a Keras sample, backend and I/O type made explicit."""
    recipe = Recipe(mode, backend=backend, calibration_count=calibration_count, per_channel=per_channel)
    return recipe.resolve(source_is_tflite=False)


def variant_label(recipe: Recipe) -> str:
    """The benchmarks' name for a resolved recipe: 'float32', 'int8 (tf_converter)', '... per-tensor'."""
    if recipe.mode is Mode.FLOAT32:
        return recipe.mode.value
    label = f"{recipe.mode.value} ({recipe.backend.value})"
    return label if recipe.per_channel else f"{label} per-tensor"


def load_keras(path: Path) -> Any:
    """The Keras model itself, for the bare converter."""
    import keras

    with _quiet.stdout_to_stderr():
        return keras.saving.load_model(path)


def evaluation_batch(x: np.ndarray, count: int) -> np.ndarray:
    """The workbench's model inputs repeated to `count` images (a batch big enough to time throughput)."""
    return np.ascontiguousarray(np.concatenate([x] * (count // len(x) + 1))[:count])


def other_samples() -> list[tuple[Path, Path]]:
    """(model, images folder) of every bundled sample besides the ImageNet one (the digits models)."""
    found = []
    for sample in json.loads((SAMPLES / "samples.json").read_text()):
        path = SAMPLES / sample["file"]
        if path != MODEL:
            found.append((path, SAMPLES / sample["images_dir"]))
    return found


@dataclass
class Workspace:
    """What the benchmarks of one run share: a scratch folder for empty caches, and the ImageNet builds.

    Attributes:
        tmp: scratch folder, removed at the end of the run.
        built: quant_core's bytes of each ImageNet variant by resolved recipe: benchmarks 0
            and 1 build them, 2 and 5 read them.
    """

    tmp: Path
    built: dict[Recipe, bytes] = field(default_factory=dict)
    _caches: int = 0

    def fresh_cache(self) -> ArtifactCache:
        """An empty artifact cache in a folder of its own."""
        self._caches += 1
        path = self.tmp / f"cache-{self._caches}"
        path.mkdir()
        return ArtifactCache(path)

    def open_workbench(self, model: Path, images: Path, labels: Path | None = None) -> tuple[Workbench, float]:
        """Workbench.open on a sample (preprocessing: what quant_core infers) and how long it took."""
        options = CompareOptions(threads=1, measure_latency=False)
        with _quiet.stdout_to_stderr():
            image_set = load_images([str(images)])
            names = read_labels_file(labels) if labels else None
            seconds, bench = timed(lambda: Workbench.open(model, image_set, class_names=names, options=options,
                                                          cache=self.fresh_cache()))
        return bench, seconds

    def build(self, bench: Workbench, recipe: Recipe, *, reset_calibration: bool) -> tuple[float, bytes]:
        """Times Workbench.build with an empty artifact cache.

        `reset_calibration` gives the workbench a fresh calibration state (as a new Workbench
        has), so a calibrated mode calibrates again instead of reusing a memoized model.
        """
        if reset_calibration:
            bench._calibrated = CalibratedModels()  # pylint: disable=protected-access
        bench.cache = self.fresh_cache()
        with _quiet.stdout_to_stderr():
            seconds, built = timed(lambda: bench.build(recipe))
        return seconds, built.model

"""Single-variant helpers behind `quantize` and `inspect`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from quant_core.cache import ArtifactCache
from quant_core.compare import CompareOptions, Workbench
from quant_core.errors import InputError
from quant_core.inputs.images import ImageItem, ImageSet, load_images
from quant_core.inputs.models import load_model
from quant_core.inputs.preprocess import PreprocessingOverride
from quant_core.modes import MODE_INFO, Mode
from quant_core.recipe import CalibrationSource, Recipe
from quant_core.results.compare_result import write_files


def quantize_file(model: str | Path, recipe: Recipe, *, images: tuple[str, ...] | ImageSet, output: Path,
                  preprocessing: PreprocessingOverride | None = None, cache: ArtifactCache | None = None) -> str:
    """Builds one variant, checks it against the source on the images (paths, or loaded), writes it and its recipe.

    Returns:
        A one-line summary.

    Raises:
        InputError: calibrated mode without images, or a failed variant.
    """
    if output.suffix != ".tflite":
        raise InputError(f"{output}: the output file must end in .tflite")
    needs_images = recipe.needs_calibration and recipe.calibration_source is CalibrationSource.IMAGES
    if not images and needs_images:
        raise InputError(f"{recipe.mode} needs calibration images; pass --images (or --calibration-source random)")
    options = CompareOptions(recipes=(recipe,), preprocessing=preprocessing or PreprocessingOverride(),
                             measure_latency=False)
    image_set = images if isinstance(images, ImageSet) else load_images(images) if images else _noise_images()
    bench = Workbench.open(model, image_set, options=options, cache=cache)
    baseline = bench.evaluate(Recipe(Mode.FLOAT32))
    variant = bench.evaluate(recipe) if recipe.mode is not Mode.FLOAT32 else baseline
    if not variant.ok:
        raise InputError(f"{recipe.mode} failed: {variant.error}")
    write_files(output.parent, variant.files(output.stem, bench.source.info, bench.preprocessing, bench.cache))
    recipe_path = output.with_suffix(".recipe.json")
    checked = f"on {len(bench.x)} images" if images else "on random inputs only (pass --images for a real check)"
    return (f"wrote {output} ({variant.size_bytes:,} bytes, {variant.size_ratio:.2f}x float32; "
            f"top-1 agreement with float32 {variant.top1_agreement:.3f} {checked}) and {recipe_path.name}")


def _noise_images(count: int = 8) -> ImageSet:
    """Deterministic noise images: enough to catch NaN or collapsed outputs without user images."""
    rng = np.random.default_rng(0)
    return ImageSet(tuple(ImageItem(f"noise-{k}", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
                          for k in range(count)))


def describe_model(model: str | Path) -> dict[str, Any]:
    """What the workbench understands about a model, as a JSON-ready dict."""
    source = load_model(model)
    info = source.info
    data = info.to_dict()
    data["modes"] = {
        m.value: [b.value for b in (MODE_INFO[m].tflite_backends if source.is_tflite else MODE_INFO[m].backends)]
        for m in Mode
    }
    if source.is_tflite:
        data["note"] = ("float .tflite input: every mode applies; dynamic_range and float16 come from the "
                        "LiteRT Quantizer, calibrated modes from the converter's calibrator or the LiteRT Quantizer")
    return data

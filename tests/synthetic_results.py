"""Comparisons built by hand in the shape of the bundled ImageNet sample's (22 photos), without TensorFlow.

Sizes and heaps are those measured on the sample (bench/RESULTS.md); latencies are synthetic timed
runs, so the verdict can be tested on any spread without timing anything.
"""

from __future__ import annotations

import numpy as np

from quant_core.env import Environment
from quant_core.inputs.models import ModelFormat, ModelInfo, OutputKind
from quant_core.inputs.preprocess import Normalization, Preprocessing
from quant_core.modes import Mode
from quant_core.ops import OpInventory
from quant_core.recipe import Recipe
from quant_core.results.compare_result import (CalibrationInfo, CompareResult, ImageRecord, Prediction, Status,
                                               VariantResult)
from quant_core.runner import Latency, Memory

IMAGES = 22
# name: (.tflite bytes, runtime heap bytes, same top-1 as float32 of 22, right of 22)
SHAPE = {
    "float32": (14_002_452, 22_563_040, 22, 20),
    "weight_only": (3_820_624, 36_606_000, 22, 20),  # the largest footprint (file + heap)
    "float16": (7_072_752, 22_596_176, 22, 20),  # half float32's file
    "int8": (4_031_336, 7_485_408, 20, 19),  # integer-only; below the default floor (99 %: all 22)
}
INTEGER_ONLY = OpInventory(total=65, float=0, int8=63, int16=0, hybrid=0, quantize=1, dequantize=1, index=0,
                           integer_only=True, by_op=())
FLOAT_OPS = OpInventory(total=65, float=65, int8=0, int16=0, hybrid=0, quantize=0, dequantize=0, index=0,
                        integer_only=False, by_op=())


def runs(median: float, spread: float = 0.04, n: int = 101) -> Latency:
    """Synthetic timed runs spread evenly ±`spread` around `median` (ms), shuffled as a timer would give them."""
    times = np.random.default_rng(0).permutation(np.linspace(median * (1 - spread), median * (1 + spread), n))
    return Latency.of([float(t) for t in times], warmup=3, threads=1)


def variant(name: str, latency: Latency | None, *, labelled: bool, recipe: Recipe | None = None) -> VariantResult:
    size, heap, agree, right = SHAPE[name]
    top1 = tuple(k if k >= IMAGES - agree or name == "float32" else k + 1 for k in range(IMAGES))
    return VariantResult(
        name=name, mode=Mode(name), recipe=recipe or Recipe(Mode(name)), status=Status.OK, size_bytes=size,
        size_ratio=size / SHAPE["float32"][0], input_dtype="int8" if name == "int8" else "float32",
        output_dtype="int8" if name == "int8" else "float32", latency=latency, memory=Memory(size, heap),
        top1_agreement=agree / IMAGES, accuracy=right / IMAGES if labelled else None, top1=top1,
        ops=INTEGER_ONLY if name == "int8" else FLOAT_OPS,
        topk=tuple((Prediction(c, f"class {c}", 0.9),) for c in top1))


def comparison(ms: dict[str, float | Latency | None], *, labelled: bool = False,
               recipes: dict[str, Recipe] | None = None) -> CompareResult:
    """A comparison of these variants (a float latency is a median with ±4 % spread; None: not timed)."""
    recipes = recipes or {}
    return CompareResult(
        model=ModelInfo("mobilenet_v2_imagenet", ModelFormat.KERAS, "a" * 64, 14_741_526, (None, 224, 224, 3),
                        "float32", (None, 1000), 1000, 3_538_984, (), None),
        output_kind=OutputKind.PROBABILITIES,
        environment=Environment("3.11.7", "Linux", "x86_64", "AMD EPYC", 2, 1, (("numpy", "2.4.6"),)),
        preprocessing=Preprocessing(224, 224, 3, Normalization.of("imagenet")),
        class_names=tuple(f"class {k}" for k in range(1000)), labels_source="folder names" if labelled else "none",
        images=tuple(ImageRecord(f"photos/{k:03d}.jpg", f"class {k}" if labelled else None, k if labelled else None)
                     for k in range(IMAGES)), skipped=(),
        variants=tuple(variant(name, runs(v) if isinstance(v, float) else v, labelled=labelled,
                               recipe=recipes.get(name)) for name, v in ms.items()),
        calibration=CalibrationInfo("your images, evenly spread", IMAGES, False),
        source_accuracy=20 / IMAGES if labelled else None, source_top5_accuracy=1.0 if labelled else None,
        request_key="k" * 64, seconds=1.0)

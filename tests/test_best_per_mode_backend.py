""""Best per mode" (no backend chosen) builds each recipe with the preferred backend that can build its options:
per-tensor 16x8 and 16x8 with layers kept in float come from the LiteRT Quantizer, not a converter refusal. A
backend the user chose is kept, and refuses what it cannot build with the way out."""

from __future__ import annotations

import pytest

from conftest import CLASSES
from quant_core import Backend, CompareOptions, Mode, Recipe
from quant_core.compare import Workbench
from quant_core.inputs.images import load_images
from quant_core.recipe import compile_recipes
from ui.settings import Settings

TF, LQ = Backend.TF_CONVERTER, Backend.LITERT_QUANTIZER


@pytest.fixture(scope="module")
def bench(model_files, image_dir, session_cache) -> Workbench:
    return Workbench.open(model_files["keras"], load_images([image_dir]), class_names=CLASSES,
                          options=CompareOptions(measure_latency=False), cache=session_cache)


@pytest.mark.parametrize("source_is_tflite", [False, True])
def test_best_per_mode_picks_the_backend_that_builds_the_options(source_is_tflite):
    def backend(recipe: Recipe) -> Backend:
        return recipe.resolve(source_is_tflite=source_is_tflite).backend_used

    assert backend(Recipe(Mode.INT16X8, per_channel=False)) is LQ
    assert backend(Recipe(Mode.INT16X8, float_layers=("a",))) is LQ
    assert backend(Recipe(Mode.INT16X8)) is TF  # where the converter can, it stays the preferred backend
    assert backend(Recipe(Mode.INT16X8, per_channel=False, backend=TF)) is TF  # a chosen backend is kept
    assert backend(Recipe(Mode.INT8, per_channel=False)) is TF
    settings = Settings(modes=(Mode.INT16X8,), per_channel=False)  # the Quantize page's "Best per mode"
    assert backend(settings.recipes()[0]) is LQ


def test_best_per_mode_builds_per_tensor_16x8_and_16x8_with_float_layers_a_chosen_converter_refuses(bench):
    per_tensor = bench.evaluate(compile_recipes([Mode.INT16X8], per_channel=False)[0], time_it=False)
    assert per_tensor.ok, per_tensor.error
    assert per_tensor.recipe.backend_used is LQ and not per_tensor.recipe.per_channel
    worst = bench.layer_report(Recipe(Mode.INT8)).worst(1)[0]
    kept = bench.evaluate(Recipe(Mode.INT16X8, float_layers=(worst.tensor,)), time_it=False)
    assert kept.ok, kept.error
    assert kept.recipe.backend_used is LQ and not kept.ops.integer_only  # the layer computes in float
    for recipe in (*compile_recipes([Mode.INT16X8], backend=TF, per_channel=False),
                   Recipe(Mode.INT16X8, backend=TF, float_layers=(worst.tensor,))):
        refused = bench.evaluate(recipe, time_it=False)  # the backend the user chose, with the way out
        assert not refused.ok and "choose the LiteRT Quantizer backend" in refused.error

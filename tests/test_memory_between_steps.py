"""What a comparison holds in memory between its steps: no interpreter past its step, no conversion garbage.

On a 224x224 model each interpreter evaluated at the images' batch size holds ~100 MB, and
the float conversion leaves ~270 MB of TensorFlow graph in reference cycles: kept (the first
until every variant was timed, the second until Python's next full collection) they took
`compare` of seven variants on EfficientNet-Lite0 from 1.3 to 1.7 GB (bench/bench_memory.py).
"""

from __future__ import annotations

import gc
import weakref

import pytest

from quant_core import runner
from quant_core.compare import CompareOptions, Workbench
from quant_core.inputs.images import load_images
from quant_core.inputs.models import load_model
from quant_core.modes import Mode
from quant_core.recipe import Recipe
from quant_core.reference import float_tflite


@pytest.fixture()
def open_runners(monkeypatch) -> list[weakref.ref]:
    """A weak reference to every TFLiteRunner opened from now on."""
    opened: list[weakref.ref] = []
    original = runner.TFLiteRunner.__init__

    def recorded(self, *args, **kwargs) -> None:
        original(self, *args, **kwargs)
        opened.append(weakref.ref(self))

    monkeypatch.setattr(runner.TFLiteRunner, "__init__", recorded)
    return opened


def _alive(opened: list[weakref.ref]) -> int:
    gc.collect()
    return sum(ref() is not None for ref in opened)


def test_no_interpreter_outlives_the_evaluation_of_a_variant_left_to_time(model_files, image_dir, cache,
                                                                          open_runners):
    bench = Workbench.open(model_files["keras"], load_images([image_dir]),
                           options=CompareOptions(measure_latency=True), cache=cache)
    measured = [bench.evaluate(Recipe(mode), time_it=False) for mode in (Mode.FLOAT32, Mode.INT8)]
    assert all(v.ok and v.latency is None for v in measured)
    assert len(open_runners) >= 3 and _alive(open_runners) == 0  # the reference's and each variant's, all closed

    timed = bench.time(measured[1])
    assert timed.latency is not None and timed.latency.runs >= 10
    assert (timed.top1_agreement, timed.memory) == (measured[1].top1_agreement, measured[1].memory)
    assert _alive(open_runners) == 0


def test_the_float_conversion_leaves_no_garbage_for_a_later_collection(model_files, cache):
    source = load_model(model_files["keras"])
    gc.collect()
    gc.disable()  # only the conversion's own collection may run: what it leaves is counted below
    try:
        model = float_tflite(source, cache)
        left = gc.collect()
    finally:
        gc.enable()
    assert model[4:8] == b"TFL3"
    assert left < 100  # ~8,200 objects of TensorFlow's traced graph when left to Python's next full collection

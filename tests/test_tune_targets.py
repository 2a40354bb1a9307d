"""The search per deployment target, and a winner far slower than float32 said so.

On the outlier model (tests/outlier.py) every int8-family variant, dynamic range and weight-only miss a budget of one
point of accuracy (conv_b's int8 weights round to zero), while float16 and int8 with conv_b kept in float meet it:
a CPU search finds a winner, an integer-only one cannot (float layers are not integer-only), a GPU one builds float16.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest

from conftest import CLASSES, REPO
from outlier import write_outlier
from quant_core import CompareOptions
from quant_core.cache import ArtifactCache
from quant_core.cli import format_tune
from quant_core.compare import Workbench
from quant_core.results.verdict import Floor, FloorKind, Target
from quant_core.runner import Latency
from quant_core.tune import SLOWER, Objective, Step, TuneResult, tune

ONE_POINT = Floor(FloorKind.ACCURACY_DROP, 0.01)
CPU_MODES = ["int8", "int8_float_io", "int16x8", "dynamic_range", "weight_only", "float16"]


@pytest.fixture(scope="module")
def outlier(tmp_path_factory):
    return write_outlier(tmp_path_factory.mktemp("targets-outlier"))


@pytest.fixture(scope="module")
def bench(outlier, tmp_path_factory) -> Workbench:
    path, images, _ = outlier
    return Workbench.open(path, images, class_names=CLASSES, options=CompareOptions(),  # latency measured
                          cache=ArtifactCache(tmp_path_factory.mktemp("targets-cache")))


@pytest.fixture(scope="module")
def searches(bench) -> dict[Target, TuneResult]:
    return {target: tune(bench, ONE_POINT, target=target) for target in Target}


def test_on_a_cpu_every_mode_is_searched_and_a_non_integer_variant_meets_the_budget(searches):
    result = searches[Target.CPU]
    names = [s.name for s in result.steps]
    assert names[:6] == CPU_MODES and names[6:] == ["int8+1float"]  # then int8's worst layer in float
    within = {s.name for s in result.steps if s.within_budget}
    assert within == {"float16", "int8+1float"}  # int8, int16x8, dynamic range and weight-only all miss
    assert result.met and result.target is Target.CPU and not result.best.variant.ops.integer_only
    assert result.best.variant.size_bytes == min(s.variant.size_bytes for s in result.steps if s.within_budget)


def test_an_integer_only_search_builds_only_integer_only_variants_and_finds_none_within(searches):
    result = searches[Target.INTEGER]
    assert [s.name for s in result.steps] == ["int8", "int16x8"]  # no float layers: they need float kernels
    assert all(s.ok and s.variant.ops.integer_only for s in result.steps)  # 16x8 with int16 input and output
    assert result.steps[1].recipe.io.value == "int16"
    assert not result.met and not any(s.within_budget for s in result.steps)
    assert "Nothing integer-only meets it" in format_tune(result)


def test_a_gpu_search_builds_what_a_gpu_runs(searches):
    result = searches[Target.GPU]
    assert [s.name for s in result.steps] == ["float16"] and result.met


def test_int8_within_the_budget_ends_a_cpu_or_an_integer_only_search(bench):
    loose = Floor(FloorKind.AGREEMENT, 0.2)
    assert [s.name for s in tune(bench, loose, target=Target.CPU).steps] == ["int8"]  # nothing smaller or faster
    integer = tune(bench, loose, target=Target.INTEGER)
    assert [s.name for s in integer.steps] == ["int8"] and integer.met


def test_the_winner_and_float32_are_timed_at_the_end_of_a_size_search(searches):
    result = searches[Target.CPU]
    assert result.objective is Objective.SIZE and result.baseline_latency_ms > 0
    assert result.best.latency_ms > 0  # timed once it won...
    assert all(s.latency_ms is None for k, s in enumerate(result.steps) if k != result.winner)  # ...the rest not
    assert result.to_dict()["baseline_latency_ms"] == result.baseline_latency_ms


def test_a_winner_far_slower_than_float32_says_so(searches):
    result = searches[Target.CPU]
    best = result.best

    def timed(step: Step, ms: float) -> Step:
        latency = Latency(median_ms=ms, p90_ms=ms, mean_ms=ms, min_ms=ms, runs=10, warmup=3, threads=1)
        return replace(step, variant=replace(step.variant, latency=latency))

    int16 = next(s for s in result.steps if s.name == "int16x8")
    slow = replace(result, steps=tuple(timed(int16, 146.0) if s is best else s for s in result.steps),
                   baseline_latency_ms=3.4)
    assert slow.speed_note.startswith("int16x8 runs 43x slower than float32 here (146 ms against 3.4 ms per image; "
                                      "16x8 runs on reference kernels on most CPUs)")
    assert f"Note: {slow.speed_note}" in format_tune(slow) and slow.to_dict()["speed_note"] == slow.speed_note
    near = replace(result, steps=tuple(timed(s, 3.4 * SLOWER * 0.99) if s is best else s for s in result.steps),
                   baseline_latency_ms=3.4)
    assert near.speed_note == "" and "Note:" not in format_tune(near)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "quant_core", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600)


def test_cli_tune_takes_the_target(outlier, tmp_path):
    path, _, labels = outlier
    common = ["tune", str(path), "--images", str(path.parent / "images"), "--labels", str(labels),
              "--cache-dir", str(tmp_path / "cache")]
    done = cli(*common, "--target", "integer-only", "--no-latency")
    assert done.returncode == 0, done.stderr
    assert "target: integer-only (Integer-only NPU, DSP or microcontroller)" in done.stdout
    assert " 1. int8: " in done.stdout and " 2. int16x8: " in done.stdout and " 3. " not in done.stdout
    assert "No recipe met the budget; the most faithful: " in done.stdout
    refused = cli(*common, "--target", "npu")
    assert refused.returncode == 2 and refused.stdout == "" and "invalid choice: 'npu'" in refused.stderr
    refused = cli(*common, "--objective", "latency", "--no-latency")
    assert refused.returncode == 2 and "the latency objective measures latency" in refused.stderr

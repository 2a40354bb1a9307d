"""The CPU verdict compares latencies with their spread: a difference within the timing noise is a tie, not a flip.

The results are built by hand in the shape of the ImageNet sample's (22 photos): weight_only is the
fastest variant but holds the largest footprint, float16 is smaller than float32 and sits near the
CPU rule's 1.25x line, where one run's median fell on one side and the next run's on the other.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from quant_core.compare import _RETIME_ROUNDS, retime_contested
from quant_core.results.compare_result import CompareResult, VariantResult
from quant_core.results.verdict import Floor, Pace, Target, contested, decide, pace
from quant_core.runner import Latency
from synthetic_results import comparison, runs

LINE = 1.25  # the CPU rule's "about as fast" factor


def machine(float16_ms: float) -> CompareResult:
    """One run of the comparison: everything as measured, float16's median where this run put it."""
    return comparison({"float32": 8.5, "weight_only": 7.27, "float16": float16_ms, "int8": 3.0})


def measured(ms: dict[str, float | Latency | None]) -> CompareResult:
    return comparison(ms)


# --- the pace of two latencies --------------------------------------------------------------------------------------

def test_the_spread_is_the_middle_half_of_the_runs_and_merging_keeps_every_run():
    latency = runs(10.0, spread=0.04, n=101)
    assert latency.samples_ms == tuple(sorted(latency.samples_ms)) and latency.runs == 101
    assert latency.spread_ms == pytest.approx((9.8, 10.2), abs=1e-3)
    assert latency.median_ms == pytest.approx(10.0)
    both = latency.merged(runs(20.0, n=101))
    assert both.runs == 202 and both.warmup == 6 and both.samples_ms == tuple(sorted(both.samples_ms))
    assert both.min_ms == pytest.approx(9.6) and both.median_ms == pytest.approx(15.0, abs=0.5)


@pytest.mark.parametrize("slow_ms, expected", [(8.95, Pace.TIE), (9.25, Pace.TIE), (12.0, Pace.BEYOND),
                                               (7.5, Pace.WITHIN)])
def test_a_latency_is_within_beyond_or_a_tie_at_the_line_with_both_spreads(slow_ms, expected):
    assert pace(runs(slow_ms), runs(7.27), factor=LINE) is expected


def test_without_stored_runs_the_medians_decide_as_before():
    old = Latency(9.25, 9.5, 9.25, 9.0, 100, 3, 1)  # a result stored before the runs were kept
    assert old.spread_ms == (9.25, 9.25)
    assert pace(old, Latency(7.27, 7.5, 7.27, 7.1, 100, 3, 1), factor=LINE) is Pace.BEYOND
    assert pace(old, Latency(7.5, 7.6, 7.5, 7.1, 100, 3, 1), factor=LINE) is Pace.WITHIN
    assert pace(old, old) is Pace.TIE


# --- the CPU card -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("float16_ms", [8.95, 9.25])  # either side of 1.25 x 7.27 = 9.09 ms, runs overlapping it
def test_a_contested_speed_gets_the_same_pick_and_says_it_is_a_tie_within_the_noise(float16_ms):
    pick = decide(machine(float16_ms)).pick(Target.CPU)
    assert pick.variant == "float16"
    assert "as fast as weight_only, the fastest, within the timing noise" in pick.reason
    assert "middle half of the runs" in pick.reason and "1.25x line" in pick.reason
    assert "as fast as weight_only within this machine's timing noise" in pick.plain


def test_both_runs_of_the_machine_give_one_answer():
    first, second = decide(machine(8.95)), decide(machine(9.25))
    assert [p.variant for p in first.picks] == [p.variant for p in second.picks]


@pytest.mark.parametrize("float16_ms", [12.0, 7.5])
def test_clearly_separated_speeds_are_not_called_a_tie(float16_ms):
    pick = decide(machine(float16_ms)).pick(Target.CPU)
    assert "timing noise" not in pick.reason and "timing noise" not in pick.plain
    assert pick.variant == ("float32" if float16_ms > 9.09 else "float16")
    if pick.variant == "float32":
        assert pick.reason.startswith("No variant with a smaller footprint meets the floor and is as fast")
        assert pick.plain.startswith("Ship the original model as it is")


def test_against_float32_the_card_says_faster_slower_or_as_fast_within_the_noise():
    tied = decide(measured({"float32": 8.5, "float16": 8.6})).pick(Target.CPU)
    assert tied.variant == "float16" and "(as fast as float32 within the timing noise)" in tied.reason
    assert "as fast as the original within the timing noise" in tied.plain
    narrow = measured({"float32": Latency.of([8.5] * 20, warmup=3, threads=1),
                       "float16": Latency.of([9.1] * 20, warmup=3, threads=1)})
    assert "(1.07x slower than float32)" in decide(narrow).pick(Target.CPU).reason


def test_the_verdict_is_the_same_after_a_round_trip_through_stored_json():
    result = machine(9.25)
    stored = CompareResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert stored.variant("float16").latency == result.variant("float16").latency
    for floor in (Floor(), Floor(value=0.9)):
        assert decide(stored, floor=floor) == decide(result, floor=floor)


def test_results_stored_before_runs_were_kept_still_load_and_decide_on_medians():
    data = machine(9.25).to_dict()
    for v in data["variants"]:
        del v["latency"]["samples_ms"]
    old = CompareResult.from_dict(json.loads(json.dumps(data)))
    assert all(v.latency.samples_ms == () for v in old.variants)
    pick = decide(old).pick(Target.CPU)  # 9.25 ms > 1.25 x 7.27 ms: as the median-only rule always said
    assert pick.variant == "float32" and "timing noise" not in pick.reason


# --- timing again what is too close to call ----------------------------------------------------------------------

class Bench:
    """Stands in for a Workbench: each `time(again=True)` adds the next synthetic runs of that variant."""

    def __init__(self, later: dict[str, Latency]) -> None:
        self.later = later
        self.timed: list[str] = []

    def time(self, variant: VariantResult, *, again: bool = False) -> VariantResult:
        assert again and variant.latency is not None
        self.timed.append(variant.name)
        return replace(variant, latency=variant.latency.merged(self.later[variant.name]))

    def result(self, variants: tuple[VariantResult, ...]) -> CompareResult:
        return replace(machine(9.25), variants=variants)


def test_contested_names_the_variants_whose_speeds_tie_at_the_line():
    assert contested(machine(9.25).variants) == ("weight_only", "float16")
    assert contested(machine(12.0).variants) == ()


def test_a_tie_is_timed_again_in_turn_and_stays_a_tie_after_the_last_round():
    variants = list(machine(9.25).variants)
    bench = Bench({"weight_only": runs(7.27), "float16": runs(9.25)})
    retime_contested(bench, variants, {v.name for v in variants}, on_progress=lambda p: None)
    assert bench.timed == ["weight_only", "float16"] * _RETIME_ROUNDS  # interleaved: the same moments for both
    assert {v.name: v.latency.runs for v in variants} == {"float32": 101, "weight_only": 101 * (1 + _RETIME_ROUNDS),
                                                         "int8": 101, "float16": 101 * (1 + _RETIME_ROUNDS)}


def test_timing_again_stops_once_the_medians_separate_beyond_their_spread():
    variants = list(machine(9.25).variants)
    bench = Bench({"weight_only": runs(7.27, n=303), "float16": runs(12.0, n=303)})  # the first timing was unlucky
    events: list = []
    retime_contested(bench, variants, {v.name for v in variants}, on_progress=events.append)
    assert bench.timed == ["weight_only", "float16"]
    assert events[-1].partial.variants == tuple(variants)  # the table shows the numbers timed again at once
    result = replace(machine(9.25), variants=tuple(variants))
    assert contested(result.variants) == () and decide(result).pick(Target.CPU).variant == "float32"


def test_variants_timed_earlier_keep_the_numbers_the_user_saw():
    variants = list(machine(9.25).variants)
    bench = Bench({"float16": runs(9.25)})
    retime_contested(bench, variants, {"float16"}, on_progress=lambda p: None)  # weight_only came from the screen
    assert bench.timed == ["float16"] * _RETIME_ROUNDS
    assert variants[1] == machine(9.25).variants[1]


def test_the_runner_keeps_every_timed_run(model_files):
    from quant_core.runner import TFLiteRunner

    runner = TFLiteRunner(model_files["tflite"].read_bytes())
    latency = runner.measure_latency(np.zeros((1, 16, 16, 3), np.float32), min_runs=12, max_runs=12)
    assert latency.runs == len(latency.samples_ms) == 12 and latency.samples_ms == tuple(sorted(latency.samples_ms))
    assert latency.samples_ms[0] <= latency.spread_ms[0] <= latency.median_ms <= latency.spread_ms[1]

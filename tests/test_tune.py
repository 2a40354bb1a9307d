"""The accuracy-budget search on the outlier model (tests/outlier.py): in Python, and as `python -m quant_core tune`."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading

import pytest

from conftest import CLASSES, REPO
from outlier import write_outlier
from quant_core import CompareOptions, InputError, Mode, Recipe
from quant_core.cache import ArtifactCache
from quant_core.compare import Workbench
from quant_core.results.verdict import Floor, FloorKind
from quant_core.tune import Objective, tune


@pytest.fixture(scope="module")
def outlier(tmp_path_factory):
    return write_outlier(tmp_path_factory.mktemp("tune-outlier"))


@pytest.fixture(scope="module")
def bench(outlier, tmp_path_factory) -> Workbench:
    path, images, _ = outlier
    return Workbench.open(path, images, class_names=CLASSES, options=CompareOptions(measure_latency=False),
                          cache=ArtifactCache(tmp_path_factory.mktemp("tune-cache")))


ONE_POINT = Floor(FloorKind.ACCURACY_DROP, 0.01)


def test_the_search_keeps_the_outlier_layer_in_float_and_stops_within_the_budget(bench):
    messages = []
    result = tune(bench, ONE_POINT, on_progress=lambda p: messages.append(p.message))  # on a CPU: every mode
    names = [s.name for s in result.steps]
    assert names == ["int8", "int8_float_io", "int16x8", "dynamic_range", "weight_only", "float16", "int8+1float"]
    assert [s.within_budget for s in result.steps] == [False] * 5 + [True, True]  # one float layer is enough
    kept = result.steps[-1]
    assert "/conv_b" in kept.recipe.float_layers[0] and "keeps CONV_2D conv_b in float" in kept.why
    assert kept.variant.accuracy >= result.baseline_accuracy - 0.01
    best = result.best  # the smaller of the two (on this tiny net, float16: conv_b's float weights outweigh)
    assert result.met and best.variant.size_bytes == min(s.variant.size_bytes for s in result.steps[-2:])
    assert any(m.startswith("Step 7: int8+1float") for m in messages) and messages[-1].startswith("Done")


def test_a_budget_int8_meets_ends_at_the_first_step(bench):
    result = tune(bench, Floor(FloorKind.AGREEMENT, 0.2))  # broken int8 still agrees on a third
    assert [s.name for s in result.steps] == ["int8"] and result.met and result.best.name == "int8"


def test_the_winner_is_the_smallest_within_the_budget_and_cancel_keeps_the_best_so_far(bench):
    loose = tune(bench, Floor(FloorKind.AGREEMENT, 0.3), max_steps=3)
    sizes = {s.name: s.variant.size_bytes for s in loose.steps if s.within_budget}
    assert loose.best.variant.size_bytes == min(sizes.values())
    cancel = threading.Event()
    cancel.set()  # cancelled before the second step: the trail has one step, the best so far
    stopped = tune(bench, ONE_POINT, cancel=cancel)
    assert stopped.cancelled and len(stopped.steps) == 1 and not stopped.met and stopped.best.name == "int8"


def test_bad_searches_are_refused(bench):
    with pytest.raises(InputError, match="latency objective needs latency measured"):
        tune(bench, ONE_POINT, objective=Objective.LATENCY)
    with pytest.raises(InputError, match="starts from a plain int8 recipe"):
        tune(bench, ONE_POINT, base=Recipe(Mode.INT16X8))


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "quant_core", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600)


def test_cli_tune_writes_the_winner_its_recipe_and_a_json_report(outlier, tmp_path):
    path, _, labels = outlier
    images = str(path.parent / "images")
    out = tmp_path / "best.tflite"
    done = cli("tune", str(path), "--images", images, "--labels", str(labels), "--max-drop", "1", "--json",
               str(tmp_path / "tune.json"), "-o", str(out), "--cache-dir", str(tmp_path / "cache"))
    assert done.returncode == 0, done.stderr
    assert "Winner: float16 (step 6), within the budget." in done.stdout
    assert "budget: accuracy drop ≤ 1 points; objective: smallest size; target: cpu" in done.stdout
    report = json.loads((tmp_path / "tune.json").read_text())
    assert set(report) == {"budget", "target", "objective", "measure", "baseline_accuracy", "baseline_latency_ms",
                           "met", "cancelled", "seconds", "steps", "winner", "speed_note", "note"}
    assert report["met"] and report["objective"] == "size" and report["budget"]["kind"] == "accuracy_drop"
    assert report["measure"] == "agreement" and report["note"] == ""
    assert report["target"] == "cpu" and report["baseline_latency_ms"] > 0 and report["winner"]["latency_ms"] > 0
    assert [s["name"] for s in report["steps"]] == ["int8", "int8_float_io", "int16x8", "dynamic_range",
                                                    "weight_only", "float16", "int8+1float"]
    assert set(report["winner"]) >= {"name", "recipe", "size_bytes", "accuracy", "agreement", "within_budget", "why"}
    recipe = json.loads(out.with_suffix(".recipe.json").read_text())
    assert recipe["recipe"] == report["winner"]["recipe"]
    assert recipe["tflite_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    # The written recipe is the whole story: built again from it, elsewhere, it gives the same bytes.
    fresh = Workbench.open(path, outlier[1], class_names=CLASSES, options=CompareOptions(measure_latency=False),
                           cache=ArtifactCache(tmp_path / "elsewhere"))
    assert fresh.build(Recipe.from_dict(recipe["recipe"])).model == out.read_bytes()


def test_cli_tune_refuses_bad_input_in_one_line(outlier, tmp_path):
    path, _, _ = outlier
    images = str(path.parent / "images")
    for args, message in [(["--max-drop", "-1"], "--max-drop is in points from 0 to 100"),
                          (["--objective", "speed"], "invalid choice: 'speed'"),
                          (["-o", str(tmp_path / "x.bin")], "must end in .tflite")]:
        done = cli("tune", str(path), "--images", images, *args)
        assert done.returncode == 2 and done.stdout == ""
        assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr


def test_the_calibration_sweep_builds_each_count_and_random_data(bench):
    from quant_core.recipe import CalibrationSource
    from quant_core.tune import calibration_sweep

    messages = []
    sweep = calibration_sweep(bench, on_progress=lambda p: messages.append(p.message))
    assert [(p.count, p.source) for p in sweep.points] == [
        (1, CalibrationSource.IMAGES), (5, CalibrationSource.IMAGES), (10, CalibrationSource.IMAGES),
        (20, CalibrationSource.IMAGES), (48, CalibrationSource.IMAGES), (48, CalibrationSource.RANDOM)]
    assert all(p.ok and 0.0 <= p.agreement <= 1.0 and p.accuracy is not None for p in sweep.points)
    direct = bench.evaluate(Recipe(Mode.INT8, calibration_count=5), time_it=False)
    assert sweep.points[1].agreement == direct.top1_agreement  # each point is an ordinary, measured build
    assert "int8 calibrated on 1 image" in messages and "int8 calibrated on random data" in messages
    with pytest.raises(InputError, match="needs no calibration"):
        calibration_sweep(bench, base=Recipe(Mode.FLOAT16))


def test_cli_tune_interrupted_keeps_the_steps_so_far_and_their_best(outlier, tmp_path):
    import signal

    path, _, labels = outlier
    # A shell without job control starts its background commands with SIGINT ignored, and Python then installs no
    # Ctrl-C handler: the CLI is started with Python's own, as in a terminal, however the tests were started.
    ctrl_c = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
              "sys.argv[0] = 'quant_core'; runpy.run_module('quant_core', run_name='__main__', alter_sys=True)")
    proc = subprocess.Popen([sys.executable, "-c", ctrl_c, "-v", "tune", str(path), "--images",
                             str(path.parent / "images"), "--labels", str(labels), "--json", str(tmp_path / "t.json"),
                             "--cache-dir", str(tmp_path / "cache")], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    seen = []
    for line in proc.stderr:  # -v: progress on stderr
        seen.append(line)
        if "Step 2: int8_float_io" in line:  # the second step has started: Ctrl-C
            proc.send_signal(signal.SIGINT)
            break
    out, rest = proc.communicate(timeout=300)
    assert proc.returncode == 130, "".join(seen) + rest
    assert " 1. int8: accuracy" in out and "No recipe met the budget (cancelled); the most faithful: int8 (step 1)." \
        in out
    assert "interrupted; the steps so far and their best are above" in rest
    report = json.loads((tmp_path / "t.json").read_text())
    assert report["cancelled"] and [s["name"] for s in report["steps"]] == ["int8"]

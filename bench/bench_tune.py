"""Issue 13, measured: the accuracy-budget search and the per-layer error on real models.

Part 1, the search (`quant_core.tune`), each in a fresh workbench with latency measured:
  - the tests' outlier model (one layer made hard to quantize; tests/outlier.py): within 1 point;
  - the ImageNet MobileNetV2 sample (22 labelled photos): within 1 point of float32's accuracy,
    smallest size, then smallest latency;
  - the digits CNN sample (its labelled images): int8 already keeps the accuracy, so the budget
    is 100 % top-1 agreement with float32 (no prediction may change).
  For each: int8's fidelity before, the winner's after, the layers it keeps in float, its size
  and latency against int8's (ratios from this run), the steps and the time the search took.
Part 2, the per-layer error's cost on MobileNetV2, each in a fresh subprocess (time, peak RSS):
  a plain int8 build by the TFLite converter, TensorFlow's QuantizationDebugger (built from a
  converter and run on the same 22 photos), and this workbench's layer report (the float and
  int8 .tflite compared with every tensor kept; no TensorFlow).

Usage: .venv/bin/python bench/bench_tune.py [--no-write]
Writes its section of bench/RESULTS.md (between the tune-bench markers).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench"), str(REPO / "tests")]
from outlier import write_outlier  # noqa: E402  pylint: disable=wrong-import-position
from results_md import report  # noqa: E402  pylint: disable=wrong-import-position

SAMPLES = REPO / "sample_models"
MOBILENET = ("mobilenet_v2_imagenet", SAMPLES / "mobilenet_v2_imagenet.keras", SAMPLES / "imagenet_images",
             SAMPLES / "imagenet_labels.txt")
DIGITS = ("digits_cnn", SAMPLES / "digits_cnn.keras", SAMPLES / "digits_images", SAMPLES / "digits_labels.txt")


def search_rows(cache: Path) -> list[str]:
    from quant_core import CompareOptions, Mode, Recipe
    from quant_core.cache import ArtifactCache
    from quant_core.compare import Workbench
    from quant_core.inputs.images import load_images, read_labels_file
    from quant_core.layers import layer_name
    from quant_core.tune import Objective, tune
    from quant_core.results.verdict import Floor, FloorKind

    (cache / "outlier").mkdir()
    outlier = write_outlier(cache / "outlier")
    rows = []
    for (name, model, images, labels), budget, objective in [
            (("outlier (tests/outlier.py)", outlier[0], outlier[0].parent / "images", outlier[2]),
             Floor(FloorKind.ACCURACY_DROP, 0.01), Objective.SIZE),
            (MOBILENET, Floor(FloorKind.ACCURACY_DROP, 0.01), Objective.SIZE),
            (MOBILENET, Floor(FloorKind.ACCURACY_DROP, 0.01), Objective.LATENCY),
            (DIGITS, Floor(FloorKind.AGREEMENT, 1.0), Objective.SIZE)]:
        bench = Workbench.open(model, load_images([images]), class_names=read_labels_file(labels),
                               options=CompareOptions(), cache=ArtifactCache(cache / f"{name}-{objective}"))
        int8 = bench.evaluate(Recipe(Mode.INT8))
        start = time.perf_counter()
        result = tune(bench, budget, objective=objective)
        seconds = time.perf_counter() - start
        best = result.best.variant
        best = best if best.latency is not None else bench.time(best)  # a size search does not time its steps
        kept = ", ".join(layer_name(t) for t in best.recipe.float_layers) or "none"
        fidelity = "accuracy" if budget.kind is FloorKind.ACCURACY_DROP else "agreement"

        def value(v, fidelity=fidelity):
            return v.accuracy if fidelity == "accuracy" else v.top1_agreement

        def also(v, fidelity=fidelity):
            return f" (agreement {v.top1_agreement:.1%})" if fidelity == "accuracy" else ""
        rows.append(
            f"| {name} | {budget.label}, smallest {objective.value} | {fidelity} {value(int8):.1%}"
            f"{also(int8)} | {best.name}: {value(best):.1%}{also(best)} {'within' if result.met else 'NOT within'}"
            f" | {kept} | "
            f"{best.size_bytes / int8.size_bytes:.2f}x | {best.latency.median_ms / int8.latency.median_ms:.2f}x | "
            f"{len(result.steps)} | {seconds:.1f} s |")
        print(rows[-1], flush=True)
    return rows


_COST = r'''
import json, sys, time
from pathlib import Path
import numpy as np
sys.path.insert(0, sys.argv[1])
what, folder = sys.argv[2], Path(sys.argv[3])
start = time.perf_counter()
if what in ("int8", "debugger"):
    import keras
    import tensorflow as tf
    from quant_core import _quiet
    calibration, x = np.load(folder / "calibration.npy"), np.load(folder / "x.npy")
    converter = tf.lite.TFLiteConverter.from_keras_model(keras.models.load_model(sys.argv[4]))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([calibration[k:k + 1]] for k in range(len(calibration)))
    with _quiet.stdout_to_stderr():
        if what == "int8":
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = converter.inference_output_type = tf.int8
            converter.convert()
        else:
            debugger = tf.lite.experimental.QuantizationDebugger(
                converter=converter, debug_dataset=lambda: ([x[k:k + 1]] for k in range(len(x))))
            debugger.run()
else:
    from quant_core.layers import layer_errors
    layer_errors((folder / "float.tflite").read_bytes(), (folder / "int8.tflite").read_bytes(),
                 np.load(folder / "x.npy"), variant="int8")
# VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so a child would report its parent's peak.
peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"seconds": time.perf_counter() - start, "peak_mb": peak_kb / 1024}))
'''


def cost_rows(cache: Path) -> list[str]:
    import numpy as np

    from quant_core import CompareOptions, Mode, Recipe
    from quant_core.cache import ArtifactCache
    from quant_core.compare import Workbench, float_tflite
    from quant_core.inputs.images import load_images

    _, model, images, _ = MOBILENET
    folder = cache / "cost"
    folder.mkdir(parents=True, exist_ok=True)
    bench = Workbench.open(model, load_images([images]), options=CompareOptions(measure_latency=False),
                           cache=ArtifactCache(folder / "cache"))
    (folder / "float.tflite").write_bytes(float_tflite(bench.source, bench.cache))
    (folder / "int8.tflite").write_bytes(bench.build(Recipe(Mode.INT8)).model)
    np.save(folder / "x.npy", bench.x)
    np.save(folder / "calibration.npy", bench.calibration_data(Recipe(Mode.INT8)))
    rows, measured = [], {}
    for what, title in [("int8", "plain int8 build (TFLite converter from the Keras model, TF import included)"),
                        ("debugger", "TensorFlow's QuantizationDebugger (converter + run: local error per op)"),
                        ("layers", "this workbench's layer report (float vs int8 .tflite, every tensor kept)")]:
        done = subprocess.run([sys.executable, "-c", _COST, str(REPO), what, str(folder), str(model)],
                              capture_output=True, text=True, check=True)
        measured[what] = json.loads(done.stdout.strip().splitlines()[-1])
        m = measured[what]
        rows.append(f"| {title} | {m['seconds']:.1f} s | {m['seconds'] / measured['int8']['seconds']:.2f}x | "
                    f"{m['peak_mb']:.0f} MB |")
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    args = parser.parse_args()
    cache = Path(tempfile.mkdtemp(prefix="qw-bench-tune-"))
    search = search_rows(cache)
    costs = cost_rows(cache)
    body = "\n".join([
        f"Measured {datetime.now(UTC):%Y-%m-%d} by `bench/bench_tune.py` (2 cores, latency at 1 thread).", "",
        "| model | budget, objective | int8 before | winner after | layers kept in float | size vs int8 | "
        "latency vs int8 | steps | search time |", "|---|---|---|---|---|---:|---:|---:|---:|", *search, "",
        "Per-layer error on MobileNetV2 and its 22 photos, each in a fresh process (wall time from the start of the "
        "work; peak RSS of the whole process):", "",
        "| what | time | vs plain int8 | peak RSS |", "|---|---:|---:|---:|", *costs, ""])
    report("tune-bench", "Accuracy-budget search and per-layer error", body, write=not args.no_write)


if __name__ == "__main__":
    main()

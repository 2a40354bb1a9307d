"""Nested calibration: int8 (tf_converter) at 22 images right after 10, vs 22 from scratch.

Usage::

    .venv/bin/python bench/bench_calibration.py [--repeats 3]

On the ImageNet MobileNetV2 sample and its 22 photos, one `Workbench` per run. Each repeat:
a fresh calibration state, int8 at 10 images, then int8 at 22 (the calibrator fed with the
10 gets only the 12 extra photos), then a fresh calibration state again and int8 at 22
from scratch. Every build starts with an empty artifact cache. The calibration step alone
(`CalibratedModels.get`: the float model's pass over the photos plus `Calibrate()`) is timed
the same way. Prints medians, the ratios from this run, and whether the incremental and
from-scratch models are byte-identical. Never asserted in tests.
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
from pathlib import Path

import numpy as np
from engine_models import IMAGES, LABELS, MODEL, Workspace, resolved
from engine_report import median, timed

from quant_core import Backend, Mode, Workbench, _quiet
from quant_core.builders import CalibratedModels

SMALL, LARGE = 10, 22


def _calibrate(bench: Workbench, memo: CalibratedModels, data: np.ndarray) -> float:
    """Seconds for the calibrated float model of `data` from `memo`."""
    digest = hashlib.sha256(data.tobytes()).hexdigest()
    with _quiet.stdout_to_stderr():
        seconds, _ = timed(lambda: memo.get(bench.source, data, digest))
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    small = resolved(Mode.INT8, backend=Backend.TF_CONVERTER, calibration_count=SMALL)
    large = resolved(Mode.INT8, backend=Backend.TF_CONVERTER, calibration_count=LARGE)
    times: dict[str, list[float]] = {k: [] for k in ("build 10", "build 22 after 10", "build 22 from scratch",
                                                     "calibrate 10", "calibrate 22 after 10",
                                                     "calibrate 22 from scratch")}
    identical = True
    with tempfile.TemporaryDirectory() as tmp:
        space = Workspace(Path(tmp))
        bench, _ = space.open_workbench(MODEL, IMAGES, LABELS)
        assert len(bench.x) == LARGE, f"expected {LARGE} photos, got {len(bench.x)}"
        data_small, data_large = bench.calibration_data(small), bench.calibration_data(large)
        for _ in range(args.repeats):
            seconds, _model = space.build(bench, small, reset_calibration=True)
            times["build 10"].append(seconds)
            seconds, incremental = space.build(bench, large, reset_calibration=False)
            times["build 22 after 10"].append(seconds)
            seconds, scratch = space.build(bench, large, reset_calibration=True)
            times["build 22 from scratch"].append(seconds)
            identical &= incremental == scratch
            memo = CalibratedModels()
            times["calibrate 10"].append(_calibrate(bench, memo, data_small))
            times["calibrate 22 after 10"].append(_calibrate(bench, memo, data_large))
            times["calibrate 22 from scratch"].append(_calibrate(bench, CalibratedModels(), data_large))
    print(f"int8 (tf_converter), {MODEL.name}, {LARGE} photos, median of {args.repeats}")
    for name, values in times.items():
        print(f"  {name:<28} {median(values):7.2f} s")
    for step in ("build", "calibrate"):
        ratio = median(times[f"{step} 22 after 10"]) / median(times[f"{step} 22 from scratch"])
        print(f"  {step}: 22 after 10 / 22 from scratch = {ratio:.2f}x")
    print(f"  22 after 10 byte-identical to 22 from scratch: {identical}")


if __name__ == "__main__":
    main()

"""What measuring every output costs next to the comparison itself, on the real segmentation and landmark samples.

A comparison of a model that is not a classifier infers what each output is (once, on the
float model's answers), then for every variant measures each output against float32's
(SQNR, cosine, max |Δ|, relative RMSE whole and per channel or point, the task's metrics:
quant_core.fidelity) and keeps its masks and points for the app (quant_core.views). This
runs the app's default comparison (every mode, latency measured) of the bundled
selfie_segmentation and face_landmark samples with a fresh cache, timing those three steps
inside the run (wrapped, so the time is theirs exactly), and prints their share of the
whole comparison (target: under 10 %). The ImageNet classifier's comparison, which also
measures its one output, is there for scale.

Usage: .venv/bin/python bench/bench_tasks.py [--no-write] [--quick]
Writes its section of bench/RESULTS.md (between the tasks-bench markers).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]
from results_md import report  # noqa: E402  pylint: disable=wrong-import-position

from quant_core import ArtifactCache, CompareOptions, CompareRequest, run_compare  # noqa: E402
from quant_core import outputs, reference  # noqa: E402  pylint: disable=wrong-import-position

SAMPLE = REPO / "sample_models"
SAMPLES = (("selfie_segmentation", "selfie_segmentation.tflite", "people_images", None),
           ("face_landmark", "face_landmark.tflite", "face_images", None),
           ("mobilenet_v2_imagenet", "mobilenet_v2_imagenet.keras", "imagenet_images", "imagenet_labels.txt"))


class Clock:
    """Seconds spent in wrapped functions, by name."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}

    def wrap(self, owner: Any, attribute: str, name: str) -> Callable[[], None]:
        original = getattr(owner, attribute)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.spent[name] = self.spent.get(name, 0.0) + time.perf_counter() - start

        setattr(owner, attribute, timed)
        return lambda: setattr(owner, attribute, original)


def measure(model: str, images: str, labels: str | None, *, latency: bool) -> tuple[float, dict[str, float], Any]:
    clock = Clock()
    undo = [clock.wrap(reference.Reference, "fidelity", "fidelity"), clock.wrap(reference.Reference, "views", "views"),
            clock.wrap(outputs, "specs_of", "roles")]
    try:
        with tempfile.TemporaryDirectory(prefix="qw-bench-tasks-") as folder:
            start = time.perf_counter()
            result = run_compare(CompareRequest(str(SAMPLE / model), (str(SAMPLE / images),),
                                                str(SAMPLE / labels) if labels else None,
                                                CompareOptions(measure_latency=latency)),
                                 cache=ArtifactCache(Path(folder)))
            total = time.perf_counter() - start
    finally:
        for step in undo:
            step()
    return total, clock.spent, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    parser.add_argument("--quick", action="store_true", help="latency off (a smoke run)")
    args = parser.parse_args()
    lines = ["| sample | task | variants ok | comparison s | roles s | fidelity s | views s | share of the run |",
             "|---|---|---|---|---|---|---|---|"]
    for name, model, images, labels in SAMPLES:
        total, spent, result = measure(model, images, labels, latency=not args.quick)
        extra = sum(spent.values())
        ok = sum(v.ok for v in result.variants)
        lines.append(f"| {name} | {result.task} | {ok} of {len(result.variants)} | {total:.1f} | "
                     f"{spent.get('roles', 0):.3f} | {spent.get('fidelity', 0):.3f} | {spent.get('views', 0):.3f} | "
                     f"**{extra / total:.1%}** |")
    lines.append("")
    lines.append("Each sample's default comparison (every mode; " + ("latency off" if args.quick else
                 "latency measured") + "), a fresh cache, on this machine's 2 cores. The last column is "
                 "roles + fidelity + views over the whole comparison (target: under 10 %).")
    report("tasks-bench", "Measuring every output: its cost next to the comparison", "\n".join(lines),
           write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())

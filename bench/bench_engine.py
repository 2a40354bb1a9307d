"""Benchmarks of the quant_core engine against the bare backends and interpreter it wraps, on the ImageNet sample.

Usage::

    .venv/bin/python bench/bench_engine.py            # full run
    .venv/bin/python bench/bench_engine.py --quick    # smoke run

Everything runs on the default bundled sample: torchvision's pretrained ImageNet
MobileNetV2 ported to Keras (sample_models/mobilenet_v2_imagenet.keras) and its 22
labelled photos. Measures, in one process and one run (ratios are never compared across
runs):

0. every mode with quant_core's default backend: size against the targets, agreement
   with float32, accuracy on the photos, mean |Δp|, latency at 1 and 2 threads, build time;
1. engine overhead: quant_core's build of each mode vs the bare TFLiteConverter /
   LiteRT Quantizer with the same settings and calibration data;
2. evaluation throughput: TFLiteRunner.predict vs a bare batched interpreter loop;
3. re-quantization: time to a new variant after Workbench.open (new mode, new
   calibration count), with an empty artifact cache;
4. peak RSS and wall time of run_compare with all 7 modes, in a fresh subprocess;
5. sizes with the non-default backend and with per-tensor int8, and where int8's bytes go.

Results are printed and written as a section of bench/RESULTS.md (a full and a quick
section are kept separately; a rerun replaces its own section). Targets are reported as
PASS or MISS and never asserted. The backends' chatter goes to stderr (`2>/dev/null` hides it).

The pieces: engine_models.py (the sample, workbenches, quant_core builds),
engine_baselines.py (the bare backends and interpreter), engine_benchmarks.py (one function per
benchmark), engine_report.py (tables, environment, RESULTS.md).
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from quant_core import _quiet  # noqa: E402  (light: no TensorFlow import)

_quiet.silence_tf_logging()  # the same TF environment for quant_core and the bare backends

import engine_benchmarks as benchmarks  # noqa: E402
from engine_models import IMAGES, LABELS, MODEL, Workspace, other_samples  # noqa: E402
from engine_report import (RESULTS_MD, Contention, Table, code_state, environment_lines, log,  # noqa: E402
                           write_results)
from quant_core import Mode  # noqa: E402


def run(settings: benchmarks.Settings, ws: Workspace, contention: Contention, *, samples: bool,
        code_at_start: str) -> list[Table]:
    """Every benchmark in order on one loaded workbench; prints each table as it is done."""
    tables: list[Table] = []

    def add(table: Table) -> None:
        tables.append(table)
        print(table.text(), flush=True)

    contention.sample("0")
    log("opening the workbench on the ImageNet MobileNetV2")
    bench, open_seconds = ws.open_workbench(MODEL, IMAGES, LABELS)
    add(benchmarks.every_mode(ws, bench, open_seconds=open_seconds, settings=settings))
    contention.sample("1")
    add(benchmarks.engine_overhead(ws, bench, MODEL, "ImageNet MobileNetV2, 224x224", settings=settings,
                                   tf_modes=settings.tf_modes, lq_modes=settings.lq_modes,
                                   float_row=not settings.quick))
    if samples:
        for path, images in other_samples():
            log(f"bench 1 on {path.name}")
            small, _ = ws.open_workbench(path, images)
            add(benchmarks.engine_overhead(ws, small, path, f"sample_models/{path.name}", settings=settings,
                                           tf_modes=settings.tf_modes, lq_modes=(Mode.WEIGHT_ONLY,),
                                           float_row=True, keep=False))
            del small
    contention.sample("2")
    add(benchmarks.evaluation_throughput(ws, bench, settings=settings))
    contention.sample("3")
    add(benchmarks.requantization(ws, bench, settings=settings))
    contention.sample("4")
    rss = benchmarks.peak_rss(ws.tmp, settings=settings)
    if code_state() != code_at_start:
        rss.notes.append(f"quant_core changed during this run ({code_at_start} -> {code_state()}): "
                         "this child imported the newer code.")
    add(rss)
    add(benchmarks.other_backend_sizes(ws, bench))
    del bench
    contention.sample("end")
    return tables


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 repeat, fewer modes in benchmarks 1 and 4, 1 thread in benchmark 2")
    parser.add_argument("--repeats", type=int, default=benchmarks.FULL.repeats,
                        help="repeats of each timed build in benchmarks 1 and 3 (full run; default 2)")
    parser.add_argument("--samples", action="store_true",
                        help="also run benchmark 1 on the digits samples of sample_models/samples.json")
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    parser.add_argument("--child-compare", nargs="+", metavar="ARG", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmarks and writes their section of RESULTS.md (or benchmark 4's child, when asked)."""
    args = parse_args(argv)
    if args.child_compare:
        benchmarks.child_compare(*args.child_compare)
        return 0

    settings = benchmarks.QUICK if args.quick else replace(benchmarks.FULL, repeats=args.repeats)
    started, t_start = datetime.datetime.now(), time.perf_counter()
    command = ".venv/bin/python bench/bench_engine.py" + ("".join(f" {shlex.quote(a)}" for a in (argv or sys.argv[1:])))
    code_at_start = code_state()
    env_lines = environment_lines(code_at_start)
    tmp = Path(tempfile.mkdtemp(prefix="quant-bench-run-"))
    try:
        contention = Contention()
        tables = run(settings, Workspace(tmp), contention, samples=args.samples, code_at_start=code_at_start)
        env_lines.append(contention.line())
        elapsed = time.perf_counter() - t_start
        if not args.no_write:
            write_results(command, "quick" if args.quick else "full", tables, started, elapsed, env_lines)
            log(f"wrote {RESULTS_MD}")
        log(f"done in {elapsed / 60:.1f} min")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

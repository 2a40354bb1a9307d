"""Peak memory of `compare` on an unseen model, for the whole command and per phase.

The model is EfficientNet-Lite0 with pretrained ImageNet weights (bench/efficientnet_lite0.py,
4.7M parameters, built once into a cache folder), the images the 20 foolbox ImageNet photos of
the bundled sample, with its labels file; every run starts from an empty artifact cache, so
everything is converted and measured for real. Two measurements:

1. The whole command, as a user runs it: `/usr/bin/time -v python -m quant_core compare MODEL
   --images PHOTOS --labels LABELS --modes <all seven>` (the CLI's defaults otherwise), its
   "Maximum resident set size", with the process tree sampled every 0.1 s (the CLI runs the
   job in its own process: a worker process would show there). PASS/MISS against 1.5 GB.
2. Per phase, in one fresh process running the same job as the CLI (`JobClient.in_process`):
   the engine's steps are wrapped (loading, preprocessing inference, the float32 conversion,
   the reference run, each variant's build and calibration, its XNNPACK run, op inventory,
   fidelity, the interpreter-heap measurement, the builtin-kernel and TFLite Micro runs,
   latency) and around each step the process's peak RSS is read from /proc/self/status
   (VmHWM) and reset (writing 5 to /proc/self/clear_refs). A step's peak includes the steps
   inside it; "RSS after" is the resident size when the step ended (what it left behind).

GB here is 2^30 bytes (GiB), as /usr/bin/time's kilobytes (KiB) divide to. Linux only.

Usage: .venv/bin/python bench/bench_memory.py [--no-write] [--cache DIR] [--json-out DIR]
Writes its section of bench/RESULTS.md (between the memory-bench markers).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]
from results_md import report  # noqa: E402  pylint: disable=wrong-import-position

PYTHON = REPO / ".venv" / "bin" / "python"
LABELS = REPO / "sample_models" / "imagenet_labels.txt"
MODES = "float32,weight_only,dynamic_range,float16,int8,int8_float_io,int16x8"
TARGET_KB = int(1.5 * 2**20)  # 1.5 GB in /usr/bin/time's kilobytes
GB = 2**30
MB = 2**20


# --------------------------------------------------------------------------
# 1. The whole command
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class CommandRun:
    """One `/usr/bin/time -v` run of the CLI."""

    max_rss_kb: int
    seconds: float
    exit_code: int
    processes: int  # the most processes seen at once in the tree under /usr/bin/time (the CLI itself: 1)
    tree_peak_kb: int  # the largest sum of RSS over that tree at one sample


def _children(pid: int) -> list[int]:
    """Every descendant of `pid` (from /proc/<pid>/task/*/children)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids = [int(k) for k in (task / "children").read_text().split()]
        except OSError:
            continue
        for kid in kids:
            found += [kid, *_children(kid)]
    return found


def _rss_kb(pid: int) -> int:
    """A process's resident set now, in KiB (0 once gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(match.group(1)) if match else 0


def run_command(model: Path, photos: Path, out: Path) -> CommandRun:
    """The CLI under /usr/bin/time -v with an empty cache; its JSON report goes to `out`/report.json."""
    out.mkdir(parents=True, exist_ok=True)
    command = ["/usr/bin/time", "-v", str(PYTHON), "-m", "quant_core", "compare", str(model), "--images", str(photos),
               "--labels", str(LABELS), "--modes", MODES, "--cache-dir", str(out / "cache"),
               "--json", str(out / "report.json")]
    start = time.perf_counter()
    with open(out / "stdout.txt", "w") as stdout, open(out / "stderr.txt", "w") as stderr:
        proc = subprocess.Popen(command, stdout=stdout, stderr=stderr, cwd=REPO)
        processes, tree_peak = 0, 0
        while proc.poll() is None:
            tree = _children(proc.pid)
            processes, tree_peak = max(processes, len(tree)), max(tree_peak, sum(_rss_kb(p) for p in tree))
            time.sleep(0.1)
    seconds = time.perf_counter() - start
    said = (out / "stderr.txt").read_text()
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", said)
    if match is None or proc.returncode:
        raise RuntimeError(f"compare failed (exit {proc.returncode}):\n{said[-2000:]}")
    return CommandRun(int(match.group(1)), seconds, proc.returncode, processes, tree_peak)


# --------------------------------------------------------------------------
# 2. Per phase, in this process
# --------------------------------------------------------------------------


def _status_kb() -> tuple[int, int]:
    """(VmHWM, VmRSS) of this process in KiB."""
    status = Path("/proc/self/status").read_text()
    return tuple(int(re.search(rf"{key}:\s+(\d+) kB", status).group(1)) for key in ("VmHWM", "VmRSS"))  # type: ignore[return-value,union-attr]


def _reset_peak() -> None:
    """Sets VmHWM back to the current RSS."""
    Path("/proc/self/clear_refs").write_text("5")


@dataclass
class Call:
    """One call of a step (KiB)."""

    name: str
    variant: str  # the variant the job was working on ("-": none yet, or the comparison as a whole)
    rss_before_kb: int
    parent: int = -1  # the index of the call it ran inside (-1: none)
    peak_kb: int = 0  # the highest RSS while it ran (steps inside it included)
    rss_after_kb: int = 0
    seconds: float = 0.0


@dataclass
class PhaseRecorder:
    """Attributes the process's peak RSS to the steps running when it was reached."""

    calls: list[Call] = field(default_factory=list)
    stack: list[Call] = field(default_factory=list)
    variant: str = "-"
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _checkpoint(self) -> int:
        """Credits the peak since the last checkpoint to every running step; resets it; returns RSS now."""
        peak, rss = _status_kb()
        for call in self.stack:
            call.peak_kb = max(call.peak_kb, peak)
        _reset_peak()
        return rss

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Records one call of a step."""
        with self.lock:
            parent = self.calls.index(self.stack[-1]) if self.stack else -1
            call = Call(name, self.variant, self._checkpoint(), parent)
            self.calls.append(call)
            self.stack.append(call)
        start = time.perf_counter()
        try:
            yield
        finally:
            with self.lock:
                call.seconds = time.perf_counter() - start
                call.rss_after_kb = self._checkpoint()
                self.stack.remove(call)

    def wrap(self, owner: Any, attribute: str, name: str, *, variant: Callable[..., str] | None = None) -> None:
        """Replaces owner.attribute (a function or method) by one recorded as step `name`.

        `variant` names, from the call's arguments, the variant the call works on (before any
        progress message inside it says so).
        """
        original = owner.__dict__[attribute] if isinstance(owner, type) else getattr(owner, attribute)
        if isinstance(original, classmethod):
            inner = original.__func__

            @functools.wraps(inner)
            def method(cls: Any, *args: Any, **kwargs: Any) -> Any:
                with self.step(name):
                    return inner(cls, *args, **kwargs)
            setattr(owner, attribute, classmethod(method))
            return

        @functools.wraps(original)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if variant is not None:
                self.variant = variant(*args, **kwargs)
            with self.step(name):
                return original(*args, **kwargs)
        setattr(owner, attribute, wrapped)

    def on_progress(self, message: Any) -> None:
        """Follows which variant the job works on (its progress messages name it)."""
        self.variant = getattr(message, "variant", None) or "-"


def _instrument(recorder: PhaseRecorder) -> None:
    """Wraps the engine's steps (module attributes the job looks up at call time)."""
    from quant_core import builders, compare, kernels, micro, reference, runner
    from quant_core.inputs.models import SourceModel

    recorder.wrap(compare.Workbench, "evaluate", "evaluate: build, check, measure",
                  variant=lambda bench, recipe, *, name=None, **_: name or recipe.name)
    recorder.wrap(compare.Workbench, "time", "latency (an interpreter of its own)",
                  variant=lambda bench, timed, **_: timed.name)
    steps: list[tuple[Any, str, str]] = [
        (compare.Workbench, "open", "open: load, preprocessing, float32 reference"),
        (compare, "load_images", "read images"),
        (compare, "load_model", "load model"),
        (compare, "labels_and_preprocessing", "labels + preprocessing inference"),
        (compare, "describe_outputs", "describe outputs"),
        (reference, "float_tflite", "float32 .tflite (converted once)"),
        (compare, "float_tflite", "float32 .tflite (converted once)"),
        (reference.Reference, "of", "reference (float32 + source outputs)"),
        (SourceModel, "predict_all", "source model run"),
        (compare, "build_variant", "build"),
        (reference.Reference, "calibration_data", "calibration data"),
        (builders.CalibratedModels, "get", "calibration (TF converter)"),
        (builders.CalibratedModels, "calibrator", "calibration (TF converter)"),
        (builders.CalibratedModels, "litert", "calibration (LiteRT Quantizer)"),
        (runner.TFLiteRunner, "__init__", "open interpreter"),
        (runner.TFLiteRunner, "predict_all", "run on XNNPACK"),
        (compare, "op_inventory", "op inventory"),
        (reference.Reference, "fidelity", "fidelity"),
        (compare, "measure_memory", "memory measurement"),
        (compare, "check_kernels", "kernel checks"),
        (micro, "run_reference", "builtin kernels run"),
        (micro, "run_micro", "TFLite Micro run"),
        (runner.TFLiteRunner, "measure_latency", "timed runs"),
    ]
    del kernels  # looks micro's functions up on the module: wrapped through `micro`
    for owner, attribute, name in steps:
        recorder.wrap(owner, attribute, name)


def run_phases(model: Path, photos: Path, out: Path) -> dict[str, Any]:
    """The CLI's compare job in this process with every step recorded; returns the table as JSON data."""
    from quant_core.cache import ArtifactCache
    from quant_core.compare import CompareOptions, CompareRequest
    from quant_core.modes import parse_modes
    from quant_core.recipe import Recipe
    from quant_core.serving.client import JobClient
    from quant_core.serving.protocol import CompareJob, Place

    recorder = PhaseRecorder()
    _instrument(recorder)
    options = CompareOptions(recipes=tuple(Recipe(m) for m in parse_modes(MODES)))
    request = CompareRequest(str(model), (str(photos),), str(LABELS), options)
    cache = ArtifactCache(out / "phase-cache")
    _reset_peak()
    with recorder.step("whole job"):
        result = JobClient.in_process().run(CompareJob(request, Place.of(cache, None)),
                                            on_progress=recorder.on_progress)
    return {"calls": [vars(c) for c in recorder.calls], "rss_end_kb": _status_kb()[1],
            "variants": [v.name for v in result.variants if v.ok]}


# --------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------


def _gb(kb: int) -> str:
    return f"{kb * 1024 / GB:.2f}"


def _mb(kb: int) -> str:
    return f"{kb * 1024 / MB:,.0f}"


def command_table(run: CommandRun) -> str:
    verdict = "PASS" if run.max_rss_kb <= TARGET_KB else "MISS"
    return "\n".join([
        "| measure | value |", "|---|---|",
        f"| peak RSS (/usr/bin/time -v, max resident set) | {_gb(run.max_rss_kb)} GB ({run.max_rss_kb:,} KB) |",
        f"| target | <= 1.50 GB: **{verdict}** |",
        f"| wall time | {run.seconds:.0f} s |",
        f"| processes in the tree (most at once, time's child included) | {run.processes} |",
        f"| largest sum of the tree's RSS at one 0.1 s sample | {_gb(run.tree_peak_kb)} GB |",
    ])


def step_table(data: dict[str, Any]) -> str:
    """Each step over all its calls: its highest peak (and the variant then), the most RSS one call left behind."""
    steps: dict[str, list[dict[str, Any]]] = {}
    for call in data["calls"]:
        steps.setdefault(call["name"], []).append(call)
    rows = ["| step | calls | highest peak RSS during (MB) | during | most RSS one call left (MB) | s in all |",
            "|---|---:|---:|---|---:|---:|"]
    for name, calls in steps.items():
        top = max(calls, key=lambda c: c["peak_kb"])
        left = max(c["rss_after_kb"] - c["rss_before_kb"] for c in calls)
        rows.append(f"| {name} | {len(calls)} | {_mb(top['peak_kb'])} | {top['variant']} | {_mb(left)} | "
                    f"{sum(c['seconds'] for c in calls):.1f} |")
    return "\n".join(rows)


def variant_table(data: dict[str, Any]) -> str:
    """Per variant: its evaluation's peak, highest inner step and RSS before/after; then its timing's peak."""
    rows = ["| variant | peak RSS evaluating (MB) | highest step inside | RSS before (MB) | RSS after (MB) | "
            "peak RSS timing (MB) |", "|---|---:|---|---:|---:|---:|"]
    calls = data["calls"]
    for name in data["variants"]:
        mine = [k for k, c in enumerate(calls) if c["variant"] == name]
        at = next((k for k in mine if calls[k]["name"].startswith("evaluate")), None)
        if at is None:
            continue
        inner = _inside(calls, at)
        top = max(inner, key=lambda c: c["peak_kb"])["name"] if inner else "-"
        timed = [calls[k]["peak_kb"] for k in mine if calls[k]["name"].startswith("latency")]
        call = calls[at]
        rows.append(f"| {name} | {_mb(call['peak_kb'])} | {top} | {_mb(call['rss_before_kb'])} | "
                    f"{_mb(call['rss_after_kb'])} | {_mb(max(timed)) if timed else '-'} |")
    return "\n".join(rows)


def _inside(calls: list[dict[str, Any]], index: int) -> list[dict[str, Any]]:
    """The calls made inside call `index`, at any depth."""
    found, within = [], {index}
    for k in range(index + 1, len(calls)):
        if calls[k]["parent"] in within:
            within.add(k)
            found.append(calls[k])
    return found


def _commit() -> str:
    """The git commit and whether quant_core/ has changes not committed."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout
    dirty = subprocess.run(["git", "status", "--porcelain", "quant_core"], cwd=REPO, capture_output=True,
                           text=True).stdout.strip()
    return f"{head.strip()}{' + uncommitted quant_core changes' if dirty else ''}"


def build_inputs(cache: Path | None) -> tuple[Path, Path]:
    """EfficientNet-Lite0's .keras file and the photo folder (built in a child: this process stays without TF)."""
    where = ["--cache", str(cache)] if cache else []
    done = subprocess.run([str(PYTHON), str(REPO / "bench" / "efficientnet_lite0.py"), *where],
                          capture_output=True, text=True, check=False, cwd=REPO)
    if done.returncode:
        raise RuntimeError(f"building EfficientNet-Lite0 failed:\n{done.stderr[-2000:]}")
    model, photos = done.stdout.split()[-2:]
    return Path(model), Path(photos)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--cache", type=Path, default=None, help="where the model is built (default: a temp folder)")
    parser.add_argument("--json-out", type=Path, default=None,
                        help="keep the CLI's outputs and the phase data in this folder (default: a temp folder)")
    parser.add_argument("--phases-child", nargs=3, metavar=("MODEL", "PHOTOS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phases_child:  # the per-phase run, in a fresh process
        model, photos, out = (Path(a) for a in args.phases_child)
        (out / "phases.json").write_text(json.dumps(run_phases(model, photos, out), indent=1))
        return
    model, photos = build_inputs(args.cache)
    with tempfile.TemporaryDirectory() as scratch:
        out = args.json_out or Path(scratch)
        commit = _commit()
        command = run_command(model, photos, out / "cli")
        child = [str(PYTHON), __file__, "--phases-child", str(model), str(photos), str(out)]
        subprocess.run(child, check=True, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        phases = json.loads((out / "phases.json").read_text())
    whole = next(c for c in phases["calls"] if c["name"] == "whole job")
    body = "\n\n".join([
        f"`compare` of all seven modes on EfficientNet-Lite0 (4.7M params, 224x224, 1000 classes) with the 20 "
        f"foolbox ImageNet photos and their labels, empty artifact cache; commit {commit}; "
        f"{os.cpu_count()} CPUs. GB = 2^30 bytes.",
        "Whole command (`/usr/bin/time -v python -m quant_core compare ...`):", command_table(command),
        f"Per step, one process running the CLI's job (whole job peak {_gb(whole['peak_kb'])} GB, RSS at the end "
        f"{_gb(phases['rss_end_kb'])} GB). A step's peak includes the steps inside it; a step that left RSS "
        "behind either keeps what it allocated or freed it to the allocator, which reuses it:",
        variant_table(phases), step_table(phases),
    ])
    report("memory-bench", "Memory: compare on an unseen EfficientNet-Lite0", body, write=not args.no_write)


if __name__ == "__main__":
    main()

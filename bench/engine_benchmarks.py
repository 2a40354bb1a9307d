"""The engine benchmarks, one function each; every one returns the Table it measured.

0 `every_mode`, 1 `engine_overhead`, 2 `evaluation_throughput`, 3 `requantization`,
4 `peak_rss` (its child process runs `child_compare`), 5 `other_backend_sizes`.
bench/README.md says what each measures and why.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine_baselines import BareInterpreterLoop, bare_keras_float, bare_litert, bare_tf_convert
from engine_models import (IMAGES, LABELS, MODEL, REPO, Workspace, evaluation_batch, load_keras, resolved,
                           variant_label)
from engine_report import Table, fmt_s, log, median, timed, verdict
from quant_core import Backend, Mode, Recipe, Workbench, _quiet, load_model, metrics
from quant_core.runner import TFLiteRunner, batch_size

ENTRY_POINT = Path(__file__).resolve().with_name("bench_engine.py")  # runs benchmark 4's child
EVAL_IMAGES = 128
EVAL_BATCH = 64

TARGET_OVERHEAD = 1.10
TARGET_THROUGHPUT = 0.90
TARGET_REQUANT_S = 1.0
TARGET_RSS_MB = 1536.0
TARGET_SIZE = {Mode.INT8: 0.28, Mode.FLOAT16: 0.51}


@dataclass(frozen=True)
class Settings:
    """How much each benchmark does: FULL gives the numbers to quote, QUICK is a smoke run."""

    quick: bool
    repeats: int  # timed repeats of each build in benchmarks 1 and 3 (--repeats in a full run)
    latency_budget_s: float  # 0: seconds of timed invokes per variant and thread count
    tf_modes: tuple[Mode, ...]  # 1: modes timed with the TFLiteConverter
    lq_modes: tuple[Mode, ...]  # 1: modes timed with the LiteRT Quantizer
    throughput_repeats: int  # 2: timed predictions of the whole batch, per variant and thread count
    threads: tuple[int, ...]  # 2: interpreter threads
    calibration_counts: tuple[int, int]  # 3: the new-count case, of the 22 photos
    compare_modes: tuple[Mode, ...] | None  # 4: modes of the child's run_compare; None: every mode


FULL = Settings(
    quick=False, repeats=2, latency_budget_s=1.0,
    tf_modes=(Mode.DYNAMIC_RANGE, Mode.FLOAT16, Mode.INT8, Mode.INT8_FLOAT_IO, Mode.INT16X8),
    lq_modes=(Mode.WEIGHT_ONLY, Mode.DYNAMIC_RANGE, Mode.FLOAT16, Mode.INT8),
    throughput_repeats=5, threads=(1, 2), calibration_counts=(10, 20), compare_modes=None,
)
QUICK = Settings(
    quick=True, repeats=1, latency_budget_s=0.5, tf_modes=(Mode.INT8,), lq_modes=(Mode.WEIGHT_ONLY, Mode.INT8),
    throughput_repeats=3, threads=(1,), calibration_counts=(5, 10),
    compare_modes=(Mode.FLOAT32, Mode.WEIGHT_ONLY, Mode.INT8),
)


# --- 0 -----------------------------------------------------------------------------------------

def every_mode(ws: Workspace, bench: Workbench, *, open_seconds: float, settings: Settings) -> Table:
    """Every mode with its default backend: size, quality on the photos, latency, build time."""
    budget = settings.latency_budget_s
    t = Table("0. Every mode on the ImageNet MobileNetV2, default backends (size targets: int8 <= 0.28x, "
              "float16 <= 0.51x)",
              ["variant", "bytes", "x float32", "size target", "top-1 agreement", "top-5 agreement", "accuracy",
               "top-5 accuracy", "mean |Δp|", "median ms, 1 thread", "median ms, 2 threads", "build"])
    bench.cache = ws.fresh_cache()
    for mode in Mode:  # in run_compare's order, on one workbench
        recipe = resolved(mode)
        name = variant_label(recipe)
        log(f"bench 0: {name}")
        with _quiet.stdout_to_stderr():
            v = bench.evaluate(Recipe(mode))
        target = TARGET_SIZE.get(mode)
        if not v.ok:
            t.rows.append([name, f"FAILED: {v.error}", "-", "MISS" if target else "-", *["-"] * 8])
            continue
        ws.built[recipe] = v.tflite_bytes(bench.cache)
        lat = [TFLiteRunner(ws.built[recipe], num_threads=n).measure_latency(bench.x[:1], budget_s=budget)
               for n in (1, 2)]
        t.rows.append([name, f"{v.size_bytes:,}", f"{v.size_ratio:.3f}x",
                       f"{verdict(v.size_ratio <= target)} (<= {target})" if target else "-",
                       f"{v.top1_agreement:.3f}", f"{v.top5_agreement:.3f}", f"{v.accuracy:.3f}",
                       f"{v.top5_accuracy:.3f}", f"{v.mean_abs_diff:.4f}", f"{lat[0].median_ms:.2f}",
                       f"{lat[1].median_ms:.2f}", fmt_s(v.build_seconds)])
    labels = [i for i in bench.labels.indices if i is not None]
    n = len(bench.x)
    t.notes += [
        f"Model: `{MODEL.relative_to(REPO)}` ({bench.source.info.param_count:,} params), float32 .tflite "
        f"{len(bench.source.float_tflite):,} bytes; {n} labelled photos (`{IMAGES.relative_to(REPO)}`); "
        f"preprocessing {bench.preprocessing.normalization.label}, inferred by quant_core "
        f"({bench.preprocessing.source}). The Keras model itself: accuracy "
        f"{metrics.accuracy(bench.source_probs, labels):.3f}, top-5 accuracy "
        f"{metrics.topk_accuracy(bench.source_probs, labels, 5):.3f}. `Workbench.open`: {fmt_s(open_seconds)}.",
        f"{n} photos give a coarse accuracy: one image is {100 / n:.1f} points. Top-1 and top-5 agreement with "
        "the float32 .tflite (top-5: float32's top-1 among the variant's top 5) and mean |Δp| (per image, the "
        "largest change of any class probability, averaged) are the finer signals.",
        "`Workbench.evaluate(Recipe(mode))` for each mode in this order on one workbench with an empty artifact "
        "cache, as run_compare does: build = `Workbench.build`; int8 calibrates the float model "
        f"({len(bench.calibration_data(Recipe(Mode.INT8)))} samples) and int8_float_io and int16x8 reuse it "
        "(benchmark 1 times builds from a fresh calibration state); float32 reuses the .tflite made at load.",
        "Latency: `TFLiteRunner.measure_latency` on the same bytes (invoke only, batch 1, 5 warm-up runs, then at "
        f"least 15 runs within a {budget:g} s budget, max 200); x86 with XNNPACK, not a phone.",
    ]
    return t


# --- 1 -----------------------------------------------------------------------------------------

@dataclass
class _Timings:
    """Benchmark 1's measurements by resolved recipe: seconds of each kind, and the bytes each side made.

    Kinds: "bare" (the bare backend), "qc" (quant_core from a fresh calibration state), "qc_next"
    (quant_core with the calibrated model memoized), "reuse" (float32: the .tflite made at load).
    """

    seconds: dict[Recipe, dict[str, list[float]]] = field(default_factory=dict)
    qc: dict[Recipe, bytes] = field(default_factory=dict)
    bare: dict[Recipe, bytes] = field(default_factory=dict)

    def add(self, recipe: Recipe, kind: str, seconds: float, model: bytes | None = None) -> None:
        """Records one timing, and the bytes it produced."""
        self.seconds.setdefault(recipe, {}).setdefault(kind, []).append(seconds)
        if model is not None:
            (self.bare if kind == "bare" else self.qc)[recipe] = model


def engine_overhead(ws: Workspace, bench: Workbench, model_path: Path, label: str, *, settings: Settings,
                    tf_modes: tuple[Mode, ...], lq_modes: tuple[Mode, ...], float_row: bool,
                    keep: bool = True) -> Table:
    """quant_core's build of each mode vs the bare backend with the same settings and calibration data.

    `keep` stores quant_core's builds in `ws.built` (the ImageNet model's, for benchmarks 2 and 5).
    """
    import litert_quantizer.algorithm_manager  # noqa: F401  (import cost out of the first timed build)

    timings = _time_builds(ws, bench, model_path, label, settings=settings, tf_modes=tf_modes,
                           lq_modes=lq_modes, float_row=float_row)
    table = _overhead_table(timings, label, repeats=settings.repeats, float_row=float_row,
                            samples=len(bench.calibration_data(Recipe(Mode.INT8))))
    if keep:
        ws.built.update(timings.qc)
    return table


def _time_builds(ws: Workspace, bench: Workbench, model_path: Path, label: str, *, settings: Settings,
                 tf_modes: tuple[Mode, ...], lq_modes: tuple[Mode, ...], float_row: bool) -> _Timings:
    """Every timed build of benchmark 1, bare and quant_core alternating which goes first."""
    timings = _Timings()
    float_recipe = resolved(Mode.FLOAT32)
    kmodel = load_keras(model_path)
    float_bare = bare_tf_convert(kmodel, Mode.FLOAT32, None)
    for r in range(settings.repeats):
        log(f"bench 1 ({label}): repeat {r + 1}/{settings.repeats}")
        order = ("bare", "qc") if r % 2 == 0 else ("qc", "bare")
        if float_row:
            _time_float_load(model_path, float_recipe, order, timings)
        seconds, qc_float = ws.build(bench, float_recipe, reset_calibration=False)
        timings.add(float_recipe, "reuse", seconds)
        timings.qc.setdefault(float_recipe, qc_float)
        timings.bare.setdefault(float_recipe, float_bare)
        for mode in tf_modes:
            _time_converter(ws, bench, kmodel, mode, order, timings)
        for mode in lq_modes:
            _time_litert(ws, bench, float_bare, mode, order, timings)
    return timings


def _time_float_load(model_path: Path, recipe: Recipe, order: tuple[str, ...], timings: _Timings) -> None:
    """quant_core converts at load: load_model plus the first float_tflite access vs keras load + convert."""
    def qc_float() -> Any:
        loaded = load_model(model_path)
        _ = loaded.float_tflite  # converted on first use
        return loaded  # freed outside the timed call

    for who in order:
        if who == "qc":
            with _quiet.stdout_to_stderr():
                seconds, source = timed(qc_float)
            timings.add(recipe, "qc", seconds, source.float_tflite)
            del source
        else:
            timings.add(recipe, "bare", *timed(lambda: bare_keras_float(model_path)))


def _time_converter(ws: Workspace, bench: Workbench, kmodel: Any, mode: Mode, order: tuple[str, ...],
                    timings: _Timings) -> None:
    """One mode with the TFLiteConverter: bare conversion vs Workbench.build (then again, memoized)."""
    recipe = resolved(mode, backend=Backend.TF_CONVERTER)
    data = bench.calibration_data(recipe) if recipe.needs_calibration else None
    for who in order:
        if who == "bare":
            timings.add(recipe, "bare", *timed(lambda: bare_tf_convert(kmodel, mode, data)))
        else:
            timings.add(recipe, "qc", *ws.build(bench, recipe, reset_calibration=True))
            if recipe.needs_calibration:  # the calibrated float model is memoized now
                timings.add(recipe, "qc_next", ws.build(bench, recipe, reset_calibration=False)[0])


def _time_litert(ws: Workspace, bench: Workbench, float_bare: bytes, mode: Mode, order: tuple[str, ...],
                 timings: _Timings) -> None:
    """One mode with the LiteRT Quantizer: the bare Quantizer on the bare float .tflite vs Workbench.build."""
    recipe = resolved(mode, backend=Backend.LITERT_QUANTIZER)
    data = bench.calibration_data(recipe) if recipe.needs_calibration else None
    inner = 1 if recipe.needs_calibration else 3  # sub-second builds: more samples against noise
    for who in order * inner:
        if who == "bare":
            timings.add(recipe, "bare", *timed(lambda: bare_litert(float_bare, mode, data)))
        else:
            timings.add(recipe, "qc", *ws.build(bench, recipe, reset_calibration=True))


def _overhead_table(timings: _Timings, label: str, *, repeats: int, float_row: bool, samples: int) -> Table:
    """Benchmark 1's table: medians, ratios, same bytes, and the notes saying how they were taken."""
    t = Table(f"1. Engine overhead: quant_core build vs bare backend ({label}; target <= {TARGET_OVERHEAD:.2f}x)",
              ["variant", "bare (median)", "quant_core first", "ratio first", "quant_core next", "ratio next",
               "same bytes", "target"])
    for recipe, times in timings.seconds.items():
        if "bare" not in times:
            continue
        bare, first = median(times["bare"]), median(times["qc"])
        nxt = median(times["qc_next"]) if "qc_next" in times else None
        name = variant_label(recipe)
        t.rows.append(["float32 (load + convert)" if recipe.mode is Mode.FLOAT32 else name, fmt_s(bare),
                       fmt_s(first), f"{first / bare:.2f}x", fmt_s(nxt) if nxt is not None else "-",
                       f"{nxt / bare:.2f}x" if nxt is not None else "-",
                       "yes" if timings.qc[recipe] == timings.bare[recipe] else "NO",
                       verdict(first / bare <= TARGET_OVERHEAD)])
    reuse = median(timings.seconds[resolved(Mode.FLOAT32)]["reuse"])
    t.notes += [
        f"median of {repeats} repeat(s) (x3 for the sub-second litert_quantizer modes), bare and quant_core "
        "alternating which goes first; each quant_core build "
        "runs `Workbench.build(recipe)` with an empty `ArtifactCache` (cache-key hashing and the cache write are "
        f"included); calibrated modes use the default recipe (100 requested, {samples} available images).",
        "'first' = a fresh Workbench calibration state (no calibrated model memoized); 'next' = the same variant "
        "again once a calibrated mode was built with the same data (quant_core calibrates the float .tflite once "
        "per calibration set and then only quantizes; the bare converter converts and calibrates from scratch "
        "every time). The target is judged on 'first'.",
        "litert_quantizer rows: bare `Quantizer` configured with the same calls and arguments as quant_core, "
        "starting from the bare float .tflite; calibration samples = `Workbench.calibration_data(recipe)` for both.",
        "same bytes: sha256 of quant_core's .tflite equals the bare backend's.",
        f"`Workbench.build(float32)` only reuses the float .tflite made at load: {fmt_s(reuse)}.",
    ]
    if float_row:
        t.notes.append("float32 row: quant_core makes the float .tflite itself, so it compares "
                       "`quant_core.load_model(path)` plus the first access to `source.float_tflite` (hash, safe "
                       "load, checks, BN probe, conversion) with `keras.saving.load_model` + "
                       "`from_keras_model(...).convert()`.")
    return t


# --- 2 -----------------------------------------------------------------------------------------

def evaluation_throughput(ws: Workspace, bench: Workbench, *, settings: Settings) -> Table:
    """TFLiteRunner.predict vs a bare batched interpreter loop, for float32 and int8."""
    x = evaluation_batch(bench.x, EVAL_IMAGES)
    runner_batch = batch_size(x.shape[1:])
    same = runner_batch == EVAL_BATCH  # else a bare loop at the runner's batch size is timed too
    header = ["variant", "threads", f"bare img/s (batch {EVAL_BATCH})"]
    header += [] if same else [f"bare img/s (batch {runner_batch})"]
    header += [f"TFLiteRunner img/s (batch {runner_batch})", f"ratio vs bare batch {EVAL_BATCH}"]
    header += [] if same else [f"ratio vs bare batch {runner_batch}"]
    header += ["max abs diff", "target"]
    t = Table(f"2. Evaluation throughput: TFLiteRunner.predict vs bare batched Interpreter loop "
              f"({EVAL_IMAGES} images; target >= {TARGET_THROUGHPUT:.2f}x vs the bare loop at batch {EVAL_BATCH})",
              header)
    for mode in (Mode.FLOAT32, Mode.INT8):
        model = ws.built[resolved(mode, backend=Backend.TF_CONVERTER)]
        for threads in settings.threads:
            log(f"bench 2: {mode.value}, {threads} thread(s)")
            ips, diff = _images_per_second(model, x, threads=threads, runner_batch=runner_batch,
                                           repeats=settings.throughput_repeats)
            row = [mode.value, str(threads), f"{ips['bare64']:.1f}"]
            row += [] if same else [f"{ips['bare_same']:.1f}"]
            row += [f"{ips['qc']:.1f}", f"{ips['qc'] / ips['bare64']:.2f}x"]
            row += [] if same else [f"{ips['qc'] / ips['bare_same']:.2f}x"]
            row += [f"{diff:.2g}", verdict(ips["qc"] / ips["bare64"] >= TARGET_THROUGHPUT)]
            t.rows.append(row)
    t.notes.append(f"the {len(bench.x)} photos repeated to {EVAL_IMAGES} images; median of "
                   f"{settings.throughput_repeats} timed repeats after one warm-up call each; runner and bare loops "
                   "alternate. The bare loops resize the input once per batch size (and for a shorter last batch), "
                   "as TFLiteRunner does.")
    if not same:
        t.notes.append(f"TFLiteRunner picks its batch from the input size: {runner_batch} images at "
                       f"{'x'.join(str(d) for d in x.shape[1:])}, so {EVAL_IMAGES} images are "
                       f"{-(-EVAL_IMAGES // runner_batch)} invokes with a shorter last batch (two resizes "
                       "and reallocations per call). The target compares with the brief's bare loop at batch "
                       f"{EVAL_BATCH}; the next column compares at the runner's own batch size.")
    return t


def _images_per_second(model: bytes, x: np.ndarray, *, threads: int, runner_batch: int,
                       repeats: int) -> tuple[dict[str, float], float]:
    """Images/s of the runner ("qc") and the bare loops, and the largest output difference between them."""
    runner = TFLiteRunner(model, num_threads=threads)
    loops: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "bare64": BareInterpreterLoop(model, threads=threads, batch=EVAL_BATCH)}
    if runner_batch != EVAL_BATCH:
        loops["bare_same"] = BareInterpreterLoop(model, threads=threads, batch=runner_batch)
    y_runner = runner.predict(x)  # warm-up (and the runner's batch resize)
    diff = max(float(np.abs(y_runner - fn(x)).max()) for fn in loops.values())
    times: dict[str, list[float]] = {k: [] for k in ["qc", *loops]}
    for r in range(repeats):
        order = ["qc", *loops] if r % 2 else [*loops, "qc"]
        for who in order:
            fn = runner.predict if who == "qc" else loops[who]
            times[who].append(timed(lambda fn=fn: fn(x))[0])
    return {k: len(x) / median(v) for k, v in times.items()}, diff


# --- 3 -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Requant:
    """One re-quantization case: the variant built before, and the one timed after it.

    memo_reusable: for a new mode the calibration memo of the prior build is the point, so it
    stays warm across repeats; a new count must calibrate anew each repeat.
    """

    title: str
    prior: Recipe
    target: Recipe
    memo_reusable: bool


def requantization(ws: Workspace, bench: Workbench, *, settings: Settings) -> Table:
    """Time to a new variant after Workbench.open: a new mode, and a new calibration count."""
    low, high = settings.calibration_counts

    def new_mode(prior: Mode, target: Mode) -> _Requant:
        return _Requant(f"new mode: {target.value} after {prior.value}", resolved(prior), resolved(target), True)

    def new_count(backend: Backend) -> _Requant:
        return _Requant(f"new count: {Mode.INT8.value} {low} -> {high} samples ({backend.value})",
                        resolved(Mode.INT8, backend=backend, calibration_count=low),
                        resolved(Mode.INT8, backend=backend, calibration_count=high), False)

    cases = [new_mode(Mode.INT8_FLOAT_IO, Mode.INT8), new_mode(Mode.INT8, Mode.INT8_FLOAT_IO),
             new_mode(Mode.INT8, Mode.INT16X8), new_count(Backend.TF_CONVERTER),
             new_count(Backend.LITERT_QUANTIZER)]
    repeats = settings.repeats
    t = Table(f"3. Re-quantization after Workbench.open (empty artifact cache; target <= {TARGET_REQUANT_S:g} s)",
              ["case", "samples", "build (median)", "build + evaluate", "target (build)"])
    for case in cases:
        log(f"bench 3: {case.title}")
        builds = _time_requantization(ws, bench, case, repeats=repeats)
        bench.cache = ws.fresh_cache()
        with _quiet.stdout_to_stderr():
            s_eval, result = timed(lambda case=case: bench.evaluate(case.target))
        status = "" if result.ok else f" (FAILED: {result.error})"
        samples = len(bench.calibration_data(case.target))
        t.rows.append([case.title, str(samples), fmt_s(median(builds)), fmt_s(s_eval) + status,
                       verdict(median(builds) <= TARGET_REQUANT_S)])
    t.notes += [
        f"{len(bench.x)} images loaded, the float baseline ready. The prior variant is built first from a fresh "
        "calibration state; then the new variant is timed with an empty `ArtifactCache` "
        f"(median of {repeats}). For a new count the calibration state is reset before every repeat.",
        "build = `Workbench.build(recipe)` (the re-quantization the target is about); build + evaluate = "
        "`Workbench.evaluate(recipe)` (build, predictions on all images, op inventory and checks; latency timing "
        "off), timed once.",
    ]
    return t


def _time_requantization(ws: Workspace, bench: Workbench, case: _Requant, *, repeats: int) -> list[float]:
    """Build times of the case's new variant after its prior one; leaves the prior's calibration memoized."""
    builds = []
    ws.build(bench, case.prior, reset_calibration=True)
    for _ in range(repeats):
        if not case.memo_reusable:
            ws.build(bench, case.prior, reset_calibration=True)
        builds.append(ws.build(bench, case.target, reset_calibration=False)[0])
    if not case.memo_reusable:
        ws.build(bench, case.prior, reset_calibration=True)
    return builds


# --- 4 -----------------------------------------------------------------------------------------

# Linux carries a process's RSS high-water mark across exec, so a direct child of the (big)
# benchmark process would report the benchmark's peak as its own; this small launcher starts it.
_LAUNCHER = (
    "import json, resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)\n"
    "print(json.dumps({'rc': p.returncode, 'wall': time.perf_counter() - t, 'stderr': p.stderr[-3000:],\n"
    "                  'maxrss_kb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))\n"
)


def peak_rss(tmp: Path, *, settings: Settings) -> Table:
    """Peak RSS and wall time of run_compare in a fresh process (all modes; 3 in a quick run)."""
    out = tmp / "child.json"
    cache = tmp / "child-cache"
    cmd = [sys.executable, str(ENTRY_POINT), "--child-compare", str(MODEL), str(IMAGES), str(LABELS), str(cache),
           str(out)]
    if settings.compare_modes:
        cmd.append(",".join(m.value for m in settings.compare_modes))
    modes = f"{len(settings.compare_modes)} modes (quick)" if settings.compare_modes else f"all {len(Mode)} modes"
    log(f"bench 4: run_compare with {modes} in a fresh subprocess")
    proc = subprocess.run([sys.executable, "-c", _LAUNCHER, *cmd], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True, check=False)
    t = Table(f"4. Peak RSS of run_compare, {modes}, fresh subprocess (target <= {TARGET_RSS_MB:.0f} MB)",
              ["item", "value", "target"])
    launch = json.loads(proc.stdout) if proc.stdout.strip() else {"rc": proc.returncode, "stderr": ""}
    if launch["rc"] != 0 or not out.exists():
        tail = launch["stderr"].strip().splitlines()
        t.rows.append(["run_compare", f"child failed (exit {launch['rc']}): {tail[-1] if tail else ''}", "MISS"])
        return t
    child = json.loads(out.read_text())
    peak_mb = launch["maxrss_kb"] / 1024.0
    t.rows += [
        ["child peak RSS (launcher's getrusage(RUSAGE_CHILDREN).ru_maxrss)", f"{peak_mb:.0f} MB",
         verdict(peak_mb <= TARGET_RSS_MB)],
        ["child's own ru_maxrss (RUSAGE_SELF, at its end)", f"{child['maxrss_kb'] / 1024:.0f} MB", ""],
        ["wall time (process start to exit)", f"{launch['wall']:.1f} s", ""],
        ["run_compare time inside the child", f"{child['seconds']:.1f} s (import {child['import_seconds']:.1f} s)",
         ""],
        ["images / preprocessing (inferred, no override)", f"{child['images']} / {child['preprocessing']}", ""],
    ]
    for v in child["variants"]:
        detail = (f"ok: {v['size_ratio']:.3f}x size, top-1 agreement {v['top1_agreement']:.3f}, accuracy "
                  f"{v['accuracy']:.3f}, build {v['build_seconds']:.2f} s, latency {v['latency_ms']:.2f} ms"
                  if v["ok"] else f"FAILED: {v['error']}")
        t.rows.append([f"variant {v['name']} ({v['backend']})", detail, ""])
    t.rows.append(["where the high-water mark rose (steps >= 200 MB between progress reports)",
                   "; ".join(_rss_jumps(child["trace"])) or "-", ""])
    t.notes += [
        "ru_maxrss is the high-water mark of resident memory. The child is started by a small launcher process "
        "(python -c) because Linux keeps a process's high-water mark across exec: a direct child of this "
        "benchmark (several GB resident) would report the benchmark's own peak.",
        "The child uses a fresh artifact cache, threads=1 and the preprocessing quant_core infers (no override).",
    ]
    return t


def _rss_jumps(trace: list[tuple[str, float, float, float]]) -> list[str]:
    """The progress steps across which the high-water mark rose by 200 MB or more."""
    jumps, last, previous = [], 0.0, "start"
    for message, at, current, peak in trace:
        if peak - last >= 200:
            jumps.append(f"{previous} -> {message} (t={at} s): high-water {peak} MB, current {current} MB")
            last = peak
        previous = message
    return jumps


def child_compare(model: str, images: str, labels: str, cache: str, out: str, modes: str | None = None) -> None:
    """Benchmark 4's child: one run_compare (all modes unless given), then its own stats as JSON."""
    t0 = time.perf_counter()
    from quant_core import ArtifactCache, CompareOptions, CompareRequest, run_compare
    from quant_core.modes import parse_modes
    import_seconds = time.perf_counter() - t0
    recipes = tuple(Recipe(m) for m in (parse_modes(modes) if modes else Mode))
    start = time.perf_counter()
    trace: list[tuple[str, float, float, float]] = []

    def progress(p: Any) -> None:  # RSS now and high-water mark at each progress step
        current = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        trace.append((p.message, round(time.perf_counter() - start, 1), round(current),
                      round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))

    with _quiet.stdout_to_stderr():
        request = CompareRequest(model, (images,), labels, CompareOptions(recipes=recipes, measure_latency=True))
        result = run_compare(request, cache=ArtifactCache(Path(cache)), on_progress=progress)
    seconds = time.perf_counter() - start
    variants = [{
        "name": v.name, "backend": v.recipe.backend.value if v.recipe.backend else None, "ok": v.ok,
        "error": v.error, "size_ratio": v.size_ratio, "top1_agreement": v.top1_agreement, "accuracy": v.accuracy,
        "build_seconds": v.build_seconds, "latency_ms": v.latency.median_ms if v.latency else None}
        for v in result.variants]
    Path(out).write_text(json.dumps({
        "seconds": seconds, "import_seconds": import_seconds, "images": len(result.images),
        "preprocessing": result.preprocessing.normalization.label,
        "variants": variants, "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "trace": trace}))


# --- 5 -----------------------------------------------------------------------------------------

def other_backend_sizes(ws: Workspace, bench: Workbench) -> Table:
    """Sizes with the non-default backend and with per-tensor int8, and where int8's bytes go."""
    log("bench 5: sizes with the other backend and an int8 per-tensor build")
    per_tensor = resolved(Mode.INT8, backend=Backend.TF_CONVERTER, per_channel=False)
    int8 = resolved(Mode.INT8, backend=Backend.TF_CONVERTER)
    defaults = {resolved(m) for m in Mode}
    others = {recipe: model for recipe, model in ws.built.items() if recipe not in defaults}
    others[per_tensor] = ws.build(bench, per_tensor, reset_calibration=False)[1]
    base = len(ws.built[resolved(Mode.FLOAT32)])
    t = Table("5. Sizes with the non-default backend and with per-tensor int8 (default backends: see 0)",
              ["variant", "bytes", "x float32", "top-1 agreement", "mean |Δp|", "size target"])
    for recipe, model in others.items():
        ratio, target = len(model) / base, TARGET_SIZE.get(recipe.mode)
        probs = metrics.to_probabilities(TFLiteRunner(model).predict(bench.x), bench.output_kind)
        t.rows.append([variant_label(recipe), f"{len(model):,}", f"{ratio:.3f}x",
                       f"{metrics.top1_agreement(probs, bench.reference_probs):.3f}",
                       f"{metrics.mean_abs_diff(probs, bench.reference_probs):.4f}",
                       f"(would {verdict(ratio <= target)}; not the default)" if target else "-"])
    t.notes.append("Builds from benchmark 1 (the same recipes as 0); quant_core's per-channel default vs "
                   "`Recipe(int8, per_channel=False)` with the same calibration samples.")
    for recipe, model in ((int8, ws.built[int8]), (per_tensor, others[per_tensor])):
        t.notes.append(f"{variant_label(recipe)}, {len(model):,} bytes: "
                       + ", ".join(f"{k} {v:,}" for k, v in size_breakdown(model).items()))
    return t


def size_breakdown(model: bytes) -> dict[str, int]:
    """Where a .tflite's bytes go: constant buffers by dtype and quantization parameters."""
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    root = schema.Model.GetRootAsModel(model, 0)
    out: dict[str, int] = {}
    scales = params = 0
    for g in range(root.SubgraphsLength()):
        sg = root.Subgraphs(g)
        for i in range(sg.TensorsLength()):
            tensor = sg.Tensors(i)
            size = root.Buffers(tensor.Buffer()).DataLength()
            if size:
                key = f"{names.get(tensor.Type(), tensor.Type())} constants"
                out[key] = out.get(key, 0) + size
            q = tensor.Quantization()
            if q is not None:
                scales += q.ScaleLength()
                params += 4 * (q.ScaleLength() + q.MinLength() + q.MaxLength()) + 8 * q.ZeroPointLength()
    if params:
        out[f"quantization parameters ({scales:,} float32 scales with int64 zero points)"] = params
    out["graph and metadata (rest)"] = len(model) - sum(out.values())
    return out

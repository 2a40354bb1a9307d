"""Benchmarks of the quant_core engine against the bare engines it wraps, on the ImageNet sample.

Usage::

    .venv/bin/python bench/bench_engine.py            # full run
    .venv/bin/python bench/bench_engine.py --quick    # smoke run

Everything runs on the default bundled sample: torchvision's pretrained ImageNet
MobileNetV2 ported to Keras (sample_models/mobilenet_v2_imagenet.keras) and its 22
labelled photos. Measures, in one process and one run (ratios are never compared across
runs):

0. every mode with quant_core's default engine: size against the targets, agreement
   with float32, accuracy on the photos, mean |Δp|, latency at 1 and 2 threads, build time;
1. engine overhead: quant_core's build of each mode vs the bare TFLiteConverter /
   LiteRT Quantizer with the same settings and calibration data;
2. evaluation throughput: TFLiteRunner.predict vs a bare batched interpreter loop;
3. re-quantization: time to a new variant after Workbench.open (new mode, new
   calibration count), with an empty artifact cache;
4. peak RSS and wall time of run_compare with all 7 modes, in a fresh subprocess;
5. sizes with the non-default engine and with per-tensor int8, and where int8's bytes go.

Results are printed and written as a section of bench/RESULTS.md (a full and a quick
section are kept separately; a rerun replaces its own section). Targets are reported as
PASS or MISS and never asserted. Engine chatter goes to stderr (`2>/dev/null` hides it).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from quant_core import _quiet  # noqa: E402  (light: no TensorFlow import)

_quiet.silence_tf_logging()  # the same TF environment for quant_core and the bare engines

import numpy as np  # noqa: E402

SAMPLES = REPO / "sample_models"
MODEL = SAMPLES / "mobilenet_v2_imagenet.keras"
IMAGES = SAMPLES / "imagenet_images"  # 22 labelled photos, one folder per class name
LABELS = SAMPLES / "imagenet_labels.txt"
EVAL_IMAGES = 128
EVAL_BATCH = 64
RESULTS_MD = Path(__file__).resolve().parent / "RESULTS.md"

TARGET_OVERHEAD = 1.10
TARGET_THROUGHPUT = 0.90
TARGET_REQUANT_S = 1.0
TARGET_RSS_MB = 1536.0
TARGET_SIZE = {"int8": 0.28, "float16": 0.51}


def log(message: str) -> None:
    """Progress on stderr, so stdout carries only the result tables."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def fmt_s(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


@dataclass
class Table:
    """One result table: printed to stdout and written to RESULTS.md."""

    title: str
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        lines = [f"### {self.title}", "", "| " + " | ".join(h.replace("|", "\\|") for h in self.header) + " |",
                 "|" + "|".join("---" for _ in self.header) + "|"]
        lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in self.rows]
        if self.notes:
            lines.append("")
            lines += [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"

    def text(self) -> str:
        cells = [self.header] + [[str(c) for c in r] for r in self.rows]
        widths = [max(len(r[i]) for r in cells) for i in range(len(self.header))]
        out = [f"== {self.title} =="]
        for k, row in enumerate(cells):
            out.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
            if k == 0:
                out.append("  ".join("-" * w for w in widths))
        out += [f"  * {n}" for n in self.notes]
        return "\n".join(out) + "\n"


# --- bare engines --------------------------------------------------------------------------

def bare_tf_convert(kmodel: Any, mode: str, data: np.ndarray | None) -> bytes:
    """The bare TFLiteConverter with the settings FIELD_NOTES documents for each mode."""
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(kmodel)
    conv.exclude_conversion_metadata = True  # quant_core sets this too (bytes depend on the model only)
    if mode != "float32":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        conv.target_spec.supported_types = [tf.float16]
    if data is not None:
        def rep():
            for i in range(len(data)):
                yield [data[i : i + 1]]
        conv.representative_dataset = rep
    if mode == "int8":
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    if mode == "int16x8":
        conv.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    with _quiet.stdout_to_stderr():
        return bytes(conv.convert())


def bare_litert(float_tflite: bytes, mode: str, data: np.ndarray | None) -> bytes:
    """The bare LiteRT Quantizer, configured with the same calls and arguments as quant_core."""
    from ai_edge_litert.interpreter import Interpreter
    from litert_quantizer import Quantizer, qtyping
    from litert_quantizer.algorithm_manager import AlgorithmName

    ops = qtyping.TFLOperationName.ALL_SUPPORTED
    channelwise = qtyping.QuantGranularity.CHANNELWISE
    q = Quantizer(float_tflite)
    if mode == "weight_only":
        q.add_weight_only_config(regex=".*", operation_name=ops, num_bits=8, granularity=channelwise)
    elif mode == "dynamic_range":
        q.add_dynamic_config(regex=".*", operation_name=ops, num_bits=8, granularity=channelwise)
    elif mode == "float16":
        q.add_weight_only_config(regex=".*", operation_name=ops, num_bits=16, algorithm_key=AlgorithmName.FLOAT_CASTING)
    elif mode in ("int8", "int16x8"):
        q.add_static_config(regex=".*", operation_name=ops, activation_num_bits=8 if mode == "int8" else 16,
                            weight_num_bits=8, weight_granularity=channelwise)
    else:
        raise ValueError(mode)
    result = None
    with _quiet.stdout_to_stderr():
        if q.need_calibration:
            assert data is not None
            signatures = Interpreter(model_content=float_tflite).get_signature_list()
            key = next(iter(signatures))
            name = signatures[key]["inputs"][0]
            result = q.calibrate({key: [{name: data[i : i + 1]} for i in range(len(data))]},
                                 num_threads=os.cpu_count() or 1)
        return bytes(q.quantize(result, enable_progress_bar=False, enable_progress_report=False).quantized_model)


MODES = ("float32", "weight_only", "dynamic_range", "float16", "int8", "int8_float_io", "int16x8")


def default_name(mode: str) -> str:
    """The bench's name for a mode built with quant_core's default backend for a Keras source."""
    from quant_core import Mode, Recipe

    if mode == "float32":
        return mode
    return f"{mode} ({Recipe(Mode(mode)).resolve(source_is_tflite=False).backend})"


def foreign_cpu(seconds: float = 1.0) -> float:
    """Cores used by other processes over `seconds` while this process sleeps (shared machines)."""
    def busy() -> tuple[float, float]:
        fields = [float(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        own = [float(v) for v in Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[11:15]]
        return sum(fields[:8]) - fields[3] - fields[4], sum(own)  # all but idle/iowait; own incl. children

    try:
        tick = os.sysconf("SC_CLK_TCK")
        (b0, o0), t0 = busy(), time.perf_counter()
        time.sleep(seconds)
        (b1, o1), t1 = busy(), time.perf_counter()
        return max(0.0, (b1 - b0 - (o1 - o0)) / tick / (t1 - t0))
    except (OSError, ValueError, IndexError):
        return float("nan")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


# --- the run ---------------------------------------------------------------------------------

class Run:
    """All benchmarks of one invocation, sharing one loaded model."""

    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.quick = args.quick
        self.tmp = tmp
        self.repeats = 1 if self.quick else args.repeats
        self.tables: list[Table] = []
        self.built: dict[str, bytes] = {}  # variant name -> quant_core bytes on the ImageNet model
        self._counter = 0
        self.contention: list[tuple[str, float]] = []  # other processes' CPU use, sampled before each benchmark

    def sample_contention(self, label: str) -> None:
        self.contention.append((label, foreign_cpu(1.0)))
        log(f"other processes used {self.contention[-1][1]:.2f} cores just before benchmark {label}")

    def contention_line(self) -> str:
        values = ", ".join(f"{label}: {cores:.2f}" for label, cores in self.contention)
        return (f"- CPU used by other processes, sampled for 1 s before each benchmark (cores of "
                f"{os.cpu_count()}): {values}")

    def fresh_cache(self):
        from quant_core import ArtifactCache

        self._counter += 1
        path = self.tmp / f"cache-{self._counter}"
        path.mkdir()
        return ArtifactCache(path)

    def add(self, table: Table) -> None:
        self.tables.append(table)
        print(table.text(), flush=True)

    def open_workbench(self, model: Path, images: Path, labels: Path | None = None):
        from quant_core import CompareOptions, Workbench, load_images, read_labels_file

        options = CompareOptions(threads=1, measure_latency=False)  # preprocessing: what quant_core infers
        with _quiet.stdout_to_stderr():
            image_set = load_images([str(images)])
            names = read_labels_file(labels) if labels else None
            seconds, bench = timed(lambda: Workbench.open(model, image_set, class_names=names, options=options,
                                                          cache=self.fresh_cache()))
        return bench, seconds

    def qc_build(self, bench: Any, recipe: Any, *, reset_calibration: bool) -> tuple[float, bytes]:
        """Times Workbench.build with an empty artifact cache."""
        from quant_core.builders import CalibratedModels

        if reset_calibration:
            bench._calibrated = CalibratedModels()  # pylint: disable=protected-access  (a fresh Workbench's state)
        bench.cache = self.fresh_cache()
        with _quiet.stdout_to_stderr():
            seconds, built = timed(lambda: bench.build(recipe))
        return seconds, built[0]

    # -- 0 ------------------------------------------------------------------------------------
    def bench0(self, bench: Any, open_seconds: float) -> None:
        """Every mode with its default engine: size, quality on the photos, latency, build time."""
        from quant_core import Mode, Recipe, metrics
        from quant_core.runner import TFLiteRunner

        budget = 0.5 if self.quick else 1.0
        t = Table("0. Every mode on the ImageNet MobileNetV2, default engines (size targets: int8 <= 0.28x, "
                  "float16 <= 0.51x)",
                  ["variant", "bytes", "x float32", "size target", "top-1 agreement", "top-5 agreement", "accuracy",
                   "top-5 accuracy", "mean |Δp|", "median ms, 1 thread", "median ms, 2 threads", "build"])
        bench.cache = self.fresh_cache()
        for mode in MODES:  # in run_compare's order, on one workbench
            name = default_name(mode)
            log(f"bench 0: {name}")
            with _quiet.stdout_to_stderr():
                v = bench.evaluate(Recipe(Mode(mode)))
            target = TARGET_SIZE.get(mode)
            if not v.ok:
                t.rows.append([name, f"FAILED: {v.error}", "-", "MISS" if target else "-", *["-"] * 8])
                continue
            self.built[name] = v.tflite_bytes()
            lat = [TFLiteRunner(self.built[name], num_threads=n).measure_latency(bench.x[:1], budget_s=budget)
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
        self.add(t)

    # -- 1 ------------------------------------------------------------------------------------
    def bench1(self, bench: Any, model_path: Path, label: str, *, tf_modes: list[str], lq_modes: list[str],
               float_row: bool, repeats: int, keep: bool = True) -> None:
        import keras
        import litert_quantizer.algorithm_manager  # noqa: F401  (import cost out of the first timed build)

        from quant_core import Backend, Mode, Recipe, load_model

        rows_t: dict[str, dict[str, list[float]]] = {}
        qc_bytes: dict[str, bytes] = {}
        bare_bytes: dict[str, bytes] = {}

        def record(name: str, kind: str, seconds: float) -> None:
            rows_t.setdefault(name, {}).setdefault(kind, []).append(seconds)

        float_recipe = Recipe(Mode.FLOAT32).resolve(source_is_tflite=False)
        with _quiet.stdout_to_stderr():
            kmodel = keras.saving.load_model(model_path)
        float_bare = bare_tf_convert(kmodel, "float32", None)
        for r in range(repeats):
            log(f"bench 1 ({label}): repeat {r + 1}/{repeats}")
            order = ["bare", "qc"] if r % 2 == 0 else ["qc", "bare"]
            if float_row:
                # quant_core converts at load: compare load_model with keras load + convert.
                for who in order:
                    if who == "qc":
                        def qc_float() -> Any:
                            loaded = load_model(model_path)
                            _ = loaded.float_tflite  # converted on first use in recent quant_core
                            return loaded
                        with _quiet.stdout_to_stderr():
                            s, source = timed(qc_float)
                        record("float32", "qc", s)
                        qc_bytes["float32"] = source.float_tflite
                        del source
                    else:
                        def bare_float() -> bytes:
                            with _quiet.stdout_to_stderr():
                                km = keras.saving.load_model(model_path)
                            return bare_tf_convert(km, "float32", None)
                        s, bare_bytes["float32"] = timed(bare_float)
                        record("float32", "bare", s)
            s_reuse, qc_float = self.qc_build(bench, float_recipe, reset_calibration=False)
            record("float32", "reuse", s_reuse)
            qc_bytes.setdefault("float32", qc_float)
            bare_bytes.setdefault("float32", float_bare)

            for mode in tf_modes:
                recipe = Recipe(Mode(mode), backend=Backend.TF_CONVERTER).resolve(source_is_tflite=False)
                data = bench.calibration_data(recipe) if recipe.needs_calibration else None
                name = f"{mode} (tf_converter)"
                for who in order:
                    if who == "bare":
                        s, bare_bytes[name] = timed(lambda: bare_tf_convert(kmodel, mode, data))
                        record(name, "bare", s)
                    else:
                        s, qc_bytes[name] = self.qc_build(bench, recipe, reset_calibration=True)
                        record(name, "qc", s)
                        if recipe.needs_calibration:  # the calibrated float model is memoized now
                            record(name, "qc_next", self.qc_build(bench, recipe, reset_calibration=False)[0])
            for mode in lq_modes:
                recipe = Recipe(Mode(mode), backend=Backend.LITERT_QUANTIZER).resolve(source_is_tflite=False)
                data = bench.calibration_data(recipe) if recipe.needs_calibration else None
                name = f"{mode} (litert_quantizer)"
                inner = 1 if recipe.needs_calibration else 3  # sub-second builds: more samples against noise
                for who in order * inner:
                    if who == "bare":
                        s, bare_bytes[name] = timed(lambda: bare_litert(float_bare, mode, data))
                        record(name, "bare", s)
                    else:
                        s, qc_bytes[name] = self.qc_build(bench, recipe, reset_calibration=True)
                        record(name, "qc", s)
        del kmodel

        samples = len(bench.calibration_data(Recipe(Mode.INT8)))
        t = Table(f"1. Engine overhead: quant_core build vs bare engine ({label}; target <= {TARGET_OVERHEAD:.2f}x)",
                  ["variant", "bare (median)", "quant_core first", "ratio first", "quant_core next", "ratio next",
                   "same bytes", "target"])
        for name, times in rows_t.items():
            if "bare" not in times:
                continue
            bare, first = median(times["bare"]), median(times["qc"])
            nxt = median(times["qc_next"]) if "qc_next" in times else None
            t.rows.append(["float32 (load + convert)" if name == "float32" else name, fmt_s(bare), fmt_s(first),
                           f"{first / bare:.2f}x", fmt_s(nxt) if nxt is not None else "-",
                           f"{nxt / bare:.2f}x" if nxt is not None else "-",
                           "yes" if sha(qc_bytes[name]) == sha(bare_bytes[name]) else "NO",
                           verdict(first / bare <= TARGET_OVERHEAD)])
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
            "same bytes: sha256 of quant_core's .tflite equals the bare engine's.",
            f"`Workbench.build(float32)` only reuses the float .tflite made at load: {fmt_s(median(rows_t['float32']['reuse']))}.",
        ]
        if float_row:
            t.notes.append("float32 row: quant_core makes the float .tflite itself, so it compares "
                           "`quant_core.load_model(path)` plus the first access to `source.float_tflite` (hash, safe "
                           "load, checks, BN probe, conversion) with `keras.saving.load_model` + "
                           "`from_keras_model(...).convert()`.")
        self.add(t)
        if keep:  # the ImageNet model's builds, for benchmarks 2 and 5
            self.built.update(qc_bytes)

    # -- 2 ------------------------------------------------------------------------------------
    def bench2(self, bench: Any) -> None:
        from ai_edge_litert.interpreter import Interpreter

        from quant_core.runner import TFLiteRunner, batch_size

        x = np.ascontiguousarray(np.concatenate([bench.x] * (EVAL_IMAGES // len(bench.x) + 1))[:EVAL_IMAGES])
        repeats = 3 if self.quick else 5
        threads_list = (1,) if self.quick else (1, 2)

        runner_batch = batch_size(x.shape[1:])

        def bare_loop(model: bytes, threads: int, batch: int) -> Callable[[np.ndarray], np.ndarray]:
            """The plain interpreter loop: resize to the batch (and to a shorter tail), set, invoke, get."""
            interp = Interpreter(model_content=model, num_threads=threads)
            state = {"n": 0}

            def resize(n: int) -> tuple[dict, dict]:
                if state["n"] != n:
                    inp = interp.get_input_details()[0]
                    interp.resize_tensor_input(inp["index"], [n, *inp["shape"][1:]], strict=False)
                    interp.allocate_tensors()
                    state["n"] = n
                    state["io"] = (interp.get_input_details()[0], interp.get_output_details()[0])
                return state["io"]

            resize(batch)

            def run(batch_all: np.ndarray) -> np.ndarray:
                outs = []
                for i in range(0, len(batch_all), batch):
                    b = batch_all[i : i + batch]
                    inp, out = resize(len(b))
                    in_dtype = np.dtype(inp["dtype"])
                    if in_dtype.kind in "iu":
                        scale, zero = inp["quantization"]
                        lim = np.iinfo(in_dtype)
                        b = np.clip(np.round(b / scale + zero), lim.min, lim.max).astype(in_dtype)
                    interp.set_tensor(inp["index"], b)
                    interp.invoke()
                    o = interp.get_tensor(out["index"])
                    if o.dtype.kind in "iu":
                        o = (o.astype(np.float32) - out["quantization"][1]) * out["quantization"][0]
                    outs.append(o.astype(np.float32))
                return np.concatenate(outs)
            return run

        same = runner_batch == EVAL_BATCH
        header = ["variant", "threads", f"bare img/s (batch {EVAL_BATCH})"]
        header += [] if same else [f"bare img/s (batch {runner_batch})"]
        header += [f"TFLiteRunner img/s (batch {runner_batch})", f"ratio vs bare batch {EVAL_BATCH}"]
        header += [] if same else [f"ratio vs bare batch {runner_batch}"]
        header += ["max abs diff", "target"]
        t = Table(f"2. Evaluation throughput: TFLiteRunner.predict vs bare batched Interpreter loop "
                  f"({EVAL_IMAGES} images; target >= {TARGET_THROUGHPUT:.2f}x vs the bare loop at batch {EVAL_BATCH})",
                  header)
        for mode in ("float32", "int8"):
            model = self.built[mode if mode == "float32" else f"{mode} (tf_converter)"]
            for threads in threads_list:
                log(f"bench 2: {mode}, {threads} thread(s)")
                runner = TFLiteRunner(model, num_threads=threads)
                loops = {"bare64": bare_loop(model, threads, EVAL_BATCH)}
                if not same:
                    loops["bare_same"] = bare_loop(model, threads, runner_batch)
                y_runner = runner.predict(x)  # warm-up (and the runner's batch resize)
                diff = max(float(np.abs(y_runner - fn(x)).max()) for fn in loops.values())
                times: dict[str, list[float]] = {k: [] for k in ["qc", *loops]}
                for r in range(repeats):
                    order = ["qc", *loops] if r % 2 else [*loops, "qc"]
                    for who in order:
                        fn = runner.predict if who == "qc" else loops[who]
                        times[who].append(timed(lambda: fn(x))[0])
                ips = {k: len(x) / median(v) for k, v in times.items()}
                row = [mode, str(threads), f"{ips['bare64']:.1f}"]
                row += [] if same else [f"{ips['bare_same']:.1f}"]
                row += [f"{ips['qc']:.1f}", f"{ips['qc'] / ips['bare64']:.2f}x"]
                row += [] if same else [f"{ips['qc'] / ips['bare_same']:.2f}x"]
                row += [f"{diff:.2g}", verdict(ips["qc"] / ips["bare64"] >= TARGET_THROUGHPUT)]
                t.rows.append(row)
                del runner, loops
        t.notes.append(f"the {len(bench.x)} photos repeated to {EVAL_IMAGES} images; median of {repeats} timed "
                       "repeats after one warm-up call each; runner and bare loops alternate. The bare loops resize the input once per batch size (and for a shorter last "
                       "batch), as TFLiteRunner does.")
        if not same:
            t.notes.append(f"TFLiteRunner picks its batch from the input size: {runner_batch} images at "
                           f"{'x'.join(str(d) for d in x.shape[1:])}, so {EVAL_IMAGES} images are "
                           f"{-(-EVAL_IMAGES // runner_batch)} invokes with a shorter last batch (two resizes "
                           "and reallocations per call). The target compares with the brief's bare loop at batch "
                           f"{EVAL_BATCH}; the next column compares at the runner's own batch size.")
        self.add(t)

    # -- 3 ------------------------------------------------------------------------------------
    def bench3(self, bench: Any) -> None:
        from quant_core import Backend, Mode, Recipe

        def r(mode: str, count: int = 100, backend: Any = None) -> Any:
            return Recipe(Mode(mode), backend=backend, calibration_count=count).resolve(source_is_tflite=False)

        lq = Backend.LITERT_QUANTIZER
        low, high = (5, 10) if self.quick else (10, 20)  # of the 22 photos
        # (title, prior, target, memo_reusable): for a new mode the calibration memo of the prior build is
        # the point, so it stays warm across repeats; a new count must calibrate anew each repeat.
        cases = [
            ("new mode: int8 after int8_float_io", r("int8_float_io"), r("int8"), True),
            ("new mode: int8_float_io after int8", r("int8"), r("int8_float_io"), True),
            ("new mode: int16x8 after int8", r("int8"), r("int16x8"), True),
            (f"new count: int8 {low} -> {high} samples (tf_converter)", r("int8", low), r("int8", high), False),
            (f"new count: int8 {low} -> {high} samples (litert_quantizer)", r("int8", low, lq),
             r("int8", high, lq), False),
        ]
        repeats = self.repeats
        t = Table(f"3. Re-quantization after Workbench.open (empty artifact cache; target <= {TARGET_REQUANT_S:g} s)",
                  ["case", "samples", "build (median)", "build + evaluate", "target (build)"])
        for title, prior, target, reusable in cases:
            log(f"bench 3: {title}")
            builds = []
            self.qc_build(bench, prior, reset_calibration=True)
            for _ in range(repeats):
                if not reusable:
                    self.qc_build(bench, prior, reset_calibration=True)
                builds.append(self.qc_build(bench, target, reset_calibration=False)[0])
            if not reusable:
                self.qc_build(bench, prior, reset_calibration=True)
            bench.cache = self.fresh_cache()
            with _quiet.stdout_to_stderr():
                s_eval, result = timed(lambda: bench.evaluate(target))
            status = "" if result.ok else f" (FAILED: {result.error})"
            samples = len(bench.calibration_data(target))
            t.rows.append([title, str(samples), fmt_s(median(builds)), fmt_s(s_eval) + status,
                           verdict(median(builds) <= TARGET_REQUANT_S)])
        t.notes += [
            f"{len(bench.x)} images loaded, the float baseline ready. The prior variant is built first from a fresh "
            "calibration state; then the new variant is timed with an empty `ArtifactCache` "
            f"(median of {repeats}). For a new count the calibration state is reset before every repeat.",
            "build = `Workbench.build(recipe)` (the re-quantization the target is about); build + evaluate = "
            "`Workbench.evaluate(recipe)` (build, predictions on all images, op inventory and checks; latency timing "
            "off), timed once.",
        ]
        self.add(t)

    # -- 4 ------------------------------------------------------------------------------------
    def bench4(self) -> None:
        out = self.tmp / "child.json"
        cache = self.tmp / "child-cache"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child-compare", str(MODEL), str(IMAGES),
               str(LABELS), str(cache), str(out)]
        if self.quick:
            cmd.append("float32,weight_only,int8")
        modes = "3 modes (quick)" if self.quick else "all 7 modes"
        log(f"bench 4: run_compare with {modes} in a fresh subprocess")
        # Linux carries a process's RSS high-water mark across exec, so a direct child of this big
        # process would report this process's peak as its own; a small launcher starts the child.
        proc = subprocess.run([sys.executable, "-c", _LAUNCHER, *cmd], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, check=False)
        t = Table(f"4. Peak RSS of run_compare, {modes}, fresh subprocess (target <= {TARGET_RSS_MB:.0f} MB)",
                  ["item", "value", "target"])
        launch = json.loads(proc.stdout) if proc.stdout.strip() else {"rc": proc.returncode, "stderr": ""}
        if launch["rc"] != 0 or not out.exists():
            tail = launch["stderr"].strip().splitlines()
            t.rows.append(["run_compare", f"child failed (exit {launch['rc']}): {tail[-1] if tail else ''}", "MISS"])
            self.add(t)
            return
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
                      if v["status"] == "ok" else f"FAILED: {v['error']}")
            t.rows.append([f"variant {v['name']} ({v.get('backend')})", detail, ""])
        jumps, last, previous = [], 0.0, "start"
        for message, at, current, peak in child["trace"]:
            if peak - last >= 200:
                jumps.append(f"{previous} -> {message} (t={at} s): high-water {peak} MB, current {current} MB")
                last = peak
            previous = message
        t.rows.append(["where the high-water mark rose (steps >= 200 MB between progress reports)",
                       "; ".join(jumps) or "-", ""])
        t.notes += [
            "ru_maxrss is the high-water mark of resident memory. The child is started by a small launcher process "
            "(python -c) because Linux keeps a process's high-water mark across exec: a direct child of this "
            "benchmark (several GB resident) would report the benchmark's own peak.",
            "The child uses a fresh artifact cache, threads=1 and the preprocessing quant_core infers (no override).",
        ]
        self.add(t)

    # -- 5 ------------------------------------------------------------------------------------
    def bench5(self, bench: Any) -> None:
        from quant_core import Backend, Mode, Recipe, metrics
        from quant_core.runner import TFLiteRunner

        log("bench 5: sizes with the other engine and an int8 per-tensor build")
        recipe = Recipe(Mode.INT8, backend=Backend.TF_CONVERTER, per_channel=False).resolve(source_is_tflite=False)
        defaults = {default_name(m) for m in MODES}
        others = {k: v for k, v in self.built.items() if k not in defaults}
        others["int8 (tf_converter) per-tensor"] = self.qc_build(bench, recipe, reset_calibration=False)[1]
        base = len(self.built["float32"])
        t = Table("5. Sizes with the non-default engine and with per-tensor int8 (default engines: see 0)",
                  ["variant", "bytes", "x float32", "top-1 agreement", "mean |Δp|", "size target"])
        for name, model in others.items():
            ratio, target = len(model) / base, TARGET_SIZE.get(name.split(" ")[0])
            probs = metrics.to_probabilities(TFLiteRunner(model).predict(bench.x), bench.output_kind)
            t.rows.append([name, f"{len(model):,}", f"{ratio:.3f}x",
                           f"{metrics.top1_agreement(probs, bench.reference_probs):.3f}",
                           f"{metrics.mean_abs_diff(probs, bench.reference_probs):.4f}",
                           f"(would {verdict(ratio <= target)}; not the default)" if target else "-"])
        t.notes.append("Builds from benchmark 1 (the same recipes as 0); quant_core's per-channel default vs "
                       "`Recipe(int8, per_channel=False)` with the same calibration samples.")
        for name, model in (("int8 (tf_converter)", self.built["int8 (tf_converter)"]),
                            ("int8 (tf_converter) per-tensor", others["int8 (tf_converter) per-tensor"])):
            t.notes.append(f"{name}, {len(model):,} bytes: "
                           + ", ".join(f"{k} {v:,}" for k, v in size_breakdown(model).items()))
        self.add(t)


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


_LAUNCHER = (
    "import json, resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)\n"
    "print(json.dumps({'rc': p.returncode, 'wall': time.perf_counter() - t, 'stderr': p.stderr[-3000:],\n"
    "                  'maxrss_kb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))\n"
)


def child_compare(model: str, images: str, labels: str, cache: str, out: str, modes: str | None = None) -> None:
    """Bench 4's child: one run_compare (all modes unless given), then its own stats as JSON."""
    t0 = time.perf_counter()
    from quant_core import ArtifactCache, CompareOptions, CompareRequest, Mode, Recipe, run_compare
    import_seconds = time.perf_counter() - t0
    recipes = tuple(Recipe(Mode(m)) for m in modes.split(",")) if modes else tuple(Recipe(m) for m in Mode)
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
        "name": v.name, "backend": str(v.recipe.backend), "status": v.status, "error": v.error,
        "size_ratio": v.size_ratio,
        "top1_agreement": v.top1_agreement, "accuracy": v.accuracy, "build_seconds": v.build_seconds,
        "latency_ms": v.latency.median_ms if v.latency else None} for v in result.variants]
    Path(out).write_text(json.dumps({
        "seconds": seconds, "import_seconds": import_seconds, "images": len(result.images),
        "preprocessing": result.preprocessing.normalization.label,
        "variants": variants, "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "trace": trace}))


# --- environment and RESULTS.md ---------------------------------------------------------------

def code_state() -> str:
    """quant_core's git commit, and whether its files have uncommitted changes."""
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=False).stdout.strip() or "unknown"
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "quant_core"],
                               capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "unknown"
    return commit + (" with uncommitted changes in quant_core/" if dirty else "")


def environment_lines(code: str) -> list[str]:
    from quant_core.env import describe_environment

    env = describe_environment(threads=1)
    flags = ""
    try:
        text = Path("/proc/cpuinfo").read_text()
        found = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni") if f" {f}" in text]
        flags = f" ({', '.join(found)})" if found else ""
    except OSError:
        pass
    packages = dict(env.packages)
    for extra in ("pillow",):
        try:
            packages[extra] = metadata.version(extra)
        except metadata.PackageNotFoundError:
            pass
    return [
        f"- quant_core: {code} (when the run started)",
        f"- CPU: {env.cpu}{flags}, {env.cpu_count} logical cores; {platform.platform()}",
        f"- Python {env.python}; " + ", ".join(f"{k} {v}" for k, v in packages.items()),
    ]


def write_results(command: str, kind: str, tables: list[Table], started: datetime.datetime, seconds: float,
                  env_lines: list[str]) -> None:
    marker_start, marker_end = f"<!-- bench:{kind}:start -->", f"<!-- bench:{kind}:end -->"
    body = [marker_start, f"## {kind.capitalize()} run", "",
            f"- Command: `{command}`",
            f"- Date: {started.isoformat(timespec='seconds')} (took {seconds / 60:.1f} min)",
            *env_lines, "",
            "Ratios compare measurements taken in this same run; nothing here is asserted by tests.", ""]
    body += [t.markdown() for t in tables]
    summary = []
    for t in tables:
        verdicts = [c for row in t.rows for c in row if c.startswith(("PASS", "MISS"))]
        if verdicts:
            summary.append(f"| {t.title.split(' (')[0]} | {sum(v.startswith('PASS') for v in verdicts)} | "
                           f"{sum(v.startswith('MISS') for v in verdicts)} |")
    body += ["### Summary", "", "| benchmark | PASS | MISS |", "|---|---|---|", *summary, "", marker_end]
    section = "\n".join(body) + "\n"
    text = RESULTS_MD.read_text() if RESULTS_MD.exists() else "# quant_core engine benchmarks\n\n" \
        "Written by `bench/bench_engine.py`; see bench/README.md.\n\n"
    if marker_start in text and marker_end in text:
        head, rest = text.split(marker_start, 1)
        text = head + section + rest.split(marker_end, 1)[1].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    RESULTS_MD.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 repeat, fewer modes in benchmarks 1 and 4, 1 thread in benchmark 2")
    parser.add_argument("--repeats", type=int, default=2,
                        help="repeats of each timed build in benchmarks 1 and 3 (full run; default 2)")
    parser.add_argument("--samples", action="store_true",
                        help="also run benchmark 1 on the digits samples of sample_models/samples.json")
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    parser.add_argument("--child-compare", nargs="+", metavar="ARG", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_compare:
        child_compare(*args.child_compare)
        return 0

    started, t_start = datetime.datetime.now(), time.perf_counter()
    command = ".venv/bin/python bench/bench_engine.py" + ("".join(f" {shlex.quote(a)}" for a in (argv or sys.argv[1:])))
    code_at_start = code_state()
    env_lines = environment_lines(code_at_start)
    tmp = Path(tempfile.mkdtemp(prefix="quant-bench-run-"))
    try:
        run = Run(args, tmp)
        run.sample_contention("0")
        log("opening the workbench on the ImageNet MobileNetV2")
        bench, open_seconds = run.open_workbench(MODEL, IMAGES, LABELS)
        run.bench0(bench, open_seconds)
        if args.quick:
            tf_modes, lq_modes = ["int8"], ["weight_only", "int8"]
        else:
            tf_modes = ["dynamic_range", "float16", "int8", "int8_float_io", "int16x8"]
            lq_modes = ["weight_only", "dynamic_range", "float16", "int8"]
        run.sample_contention("1")
        run.bench1(bench, MODEL, "ImageNet MobileNetV2, 224x224", tf_modes=tf_modes, lq_modes=lq_modes,
                   float_row=not args.quick, repeats=run.repeats)
        if args.samples:
            for sample in json.loads((SAMPLES / "samples.json").read_text()):
                path = SAMPLES / sample["file"]
                if path != MODEL:
                    log(f"bench 1 on {path.name}")
                    small, _ = run.open_workbench(path, SAMPLES / sample["images_dir"])
                    run.bench1(small, path, f"sample_models/{path.name}", tf_modes=tf_modes,
                               lq_modes=["weight_only"], float_row=True, repeats=run.repeats, keep=False)
                    del small
        run.sample_contention("2")
        run.bench2(bench)
        run.sample_contention("3")
        run.bench3(bench)
        run.sample_contention("4")
        run.bench4()
        if code_state() != code_at_start and run.tables[-1].title.startswith("4."):
            run.tables[-1].notes.append(f"quant_core changed during this run ({code_at_start} -> {code_state()}): "
                                        "this child imported the newer code.")
        run.bench5(bench)
        del bench
        run.sample_contention("end")
        env_lines.append(run.contention_line())
        elapsed = time.perf_counter() - t_start
        if not args.no_write:
            write_results(command, "quick" if args.quick else "full", run.tables, started, elapsed, env_lines)
            log(f"wrote {RESULTS_MD}")
        log(f"done in {elapsed / 60:.1f} min")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmarks of the quant_core engine against the bare engines it wraps.

Usage::

    .venv/bin/python bench/bench_engine.py            # full run (~10-15 min on 2 cores)
    .venv/bin/python bench/bench_engine.py --quick    # smoke run (~1-2 min once the model is cached)

Measures, in one process and one run (ratios are never compared across runs):

0. a realistic MobileNetV2-size model built without downloads (digits upscaled to
   224x224, batch-norm statistics recalibrated, last Dense layer trained), cached;
1. engine overhead: quant_core's build of each mode vs the bare TFLiteConverter /
   LiteRT Quantizer with the same settings and calibration data;
2. evaluation throughput: TFLiteRunner.predict vs a bare batched interpreter loop,
   plus per-image latency of every mode;
3. re-quantization: time to a new variant after Workbench.open (new mode, new
   calibration count), with an empty artifact cache;
4. peak RSS and wall time of run_compare with all 7 modes, in a fresh subprocess;
5. .tflite sizes of every mode relative to float32.

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

PREP_VERSION = 2  # bump when the prepared model or image set changes
IMAGE_SIZE = 224
NUM_CLASSES = 10
BN_IMAGES = 200
BN_BATCH = 25
HEAD_EPOCHS = 20
IMAGES_PER_CLASS = 10  # 100 evaluation images
QUICK_IMAGES_PER_CLASS = 2  # 20 images in --quick
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
        lines = [f"### {self.title}", "", "| " + " | ".join(self.header) + " |",
                 "|" + "|".join("---" for _ in self.header) + "|"]
        lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in self.rows]
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


# --- 0. the MobileNetV2-size model ---------------------------------------------------------

@dataclass(frozen=True)
class Prepared:
    model: Path
    images: Path
    quick_images: Path
    info: dict[str, Any]
    cached: bool


def _digits_rgb(images_u8: np.ndarray) -> np.ndarray:
    """8x8 uint8 digits -> 224x224 RGB uint8, PIL bilinear."""
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(a).resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
                                .convert("RGB")) for a in images_u8])


def _to_input(rgb: np.ndarray) -> np.ndarray:
    """uint8 0..255 -> float32 [-1, 1], as keras.applications.mobilenet_v2 expects."""
    return (rgb.astype(np.float32) / np.float32(127.5) - np.float32(1.0)).astype(np.float32)


def prepare_model(cache_dir: Path) -> Prepared:
    """Builds (or loads from cache) the realistic MobileNetV2-size digits model and its images."""
    root = cache_dir / f"mobilenetv2_digits_v{PREP_VERSION}"
    model_path, info_path = root / "mobilenetv2_digits.keras", root / "prep.json"
    images, quick = root / "images", root / "images_quick"
    if model_path.exists() and info_path.exists() and images.is_dir() and quick.is_dir():
        return Prepared(model_path, images, quick, json.loads(info_path.read_text()), True)

    log(f"preparing the MobileNetV2-size model in {root} (one-time, ~2-3 min)")
    start = time.perf_counter()
    import keras
    import tensorflow as tf
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    u8 = np.clip(np.round(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    x_tr, x_te, y_tr, y_te = train_test_split(u8, digits.target, test_size=0.2, random_state=0,
                                              stratify=digits.target)
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(weights=None, input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3),
                                           classes=NUM_CLASSES)
    to_np = keras.ops.convert_to_numpy

    # Batch-norm recalibration: momentum 0 makes each training-mode pass store that batch's
    # statistics; they are pooled over the batches and written back. Nothing else changes.
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    before = [(to_np(b.moving_mean).copy(), to_np(b.moving_variance).copy()) for b in bns]
    others_before = [to_np(w).copy() for layer in model.layers if layer not in bns for w in layer.weights]
    momenta = [b.momentum for b in bns]
    for b in bns:
        b.momentum = 0.0
    step = tf.function(lambda batch: model(batch, training=True))
    x_bn = _to_input(_digits_rgb(x_tr[:BN_IMAGES]))
    means: list[list[np.ndarray]] = [[] for _ in bns]
    variances: list[list[np.ndarray]] = [[] for _ in bns]
    for i in range(0, len(x_bn), BN_BATCH):
        step(tf.constant(x_bn[i : i + BN_BATCH]))
        for k, b in enumerate(bns):
            means[k].append(to_np(b.moving_mean).copy())
            variances[k].append(to_np(b.moving_variance).copy())
    for k, b in enumerate(bns):
        m, v = np.stack(means[k]), np.stack(variances[k])
        b.moving_mean.assign(m.mean(0))
        b.moving_variance.assign(v.mean(0) + m.var(0))  # pooled variance over the batches
        b.momentum = momenta[k]
    changed = sum(not (np.allclose(to_np(b.moving_mean), m0) and np.allclose(to_np(b.moving_variance), v0))
                  for b, (m0, v0) in zip(bns, before))
    others_after = [to_np(w) for layer in model.layers if layer not in bns for w in layer.weights]
    others_same = all(np.array_equal(a, b) for a, b in zip(others_before, others_after))
    if changed != len(bns) or not others_same:
        raise RuntimeError(f"BN recalibration failed: {changed}/{len(bns)} BN layers changed, "
                           f"other weights unchanged: {others_same}")
    bn_seconds = time.perf_counter() - start

    # Train only the final Dense layer, on pooled features of the frozen network.
    head_layer = model.layers[-1]
    assert isinstance(head_layer, keras.layers.Dense), head_layer
    features = keras.Model(model.inputs, head_layer.input)

    def feats(x_u8: np.ndarray) -> np.ndarray:
        parts = [features.predict(_to_input(_digits_rgb(x_u8[i : i + 128])), batch_size=32, verbose=0)
                 for i in range(0, len(x_u8), 128)]
        return np.concatenate(parts)

    f_tr, f_te = feats(x_tr), feats(x_te)
    # Trained on standardized features (the random-init features have a large common offset),
    # then the standardization is folded into the Dense layer's kernel and bias.
    mu, sd = f_tr.mean(0), f_tr.std(0) + 1e-6
    head = keras.Sequential([keras.Input((f_tr.shape[1],)), keras.layers.Dense(NUM_CLASSES, activation="softmax")])
    head.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                 metrics=["accuracy"])
    head.fit((f_tr - mu) / sd, y_tr, epochs=HEAD_EPOCHS, batch_size=64, verbose=0, shuffle=True)
    kernel, bias = head.layers[-1].get_weights()
    head_layer.set_weights([(kernel / sd[:, None]).astype(np.float32),
                            (bias - (mu / sd) @ kernel).astype(np.float32)])
    head_fn = keras.Sequential([keras.Input((f_tr.shape[1],)), keras.layers.Dense(NUM_CLASSES, activation="softmax")])
    head_fn.layers[-1].set_weights(head_layer.get_weights())
    train_acc = float(np.mean(head_fn.predict(f_tr, verbose=0).argmax(1) == y_tr))
    test_probs = head_fn.predict(f_te, verbose=0)
    test_acc = float(np.mean(test_probs.argmax(1) == y_te))

    # Evaluation images: held-out test digits, 224x224 RGB PNGs in class folders.
    tmp_root = Path(tempfile.mkdtemp(dir=cache_dir, prefix=".prep-"))
    picks: dict[int, list[int]] = {c: list(np.flatnonzero(y_te == c)[:IMAGES_PER_CLASS]) for c in range(NUM_CLASSES)}
    rgb_te = {int(i): a for i, a in zip(np.concatenate(list(picks.values())),
                                        _digits_rgb(x_te[np.concatenate(list(picks.values()))]))}
    for folder, per_class in (("images", IMAGES_PER_CLASS), ("images_quick", QUICK_IMAGES_PER_CLASS)):
        for c, idx in picks.items():
            (tmp_root / folder / str(c)).mkdir(parents=True, exist_ok=True)
            for i in idx[:per_class]:
                Image.fromarray(rgb_te[int(i)]).save(tmp_root / folder / str(c) / f"{c}_{int(i):03d}.png")
    chosen = np.concatenate(list(picks.values()))
    full_model_probs = np.asarray(model.predict(_to_input(np.stack([rgb_te[int(i)] for i in chosen])),
                                                batch_size=25, verbose=0))
    model.save(tmp_root / model_path.name)
    info = {
        "prep_version": PREP_VERSION, "params": int(model.count_params()),
        "bn_layers": len(bns), "bn_layers_changed": int(changed), "bn_images": BN_IMAGES,
        "non_bn_weights_unchanged": bool(others_same),
        "head_epochs": HEAD_EPOCHS, "train_images": len(x_tr), "test_images": len(x_te),
        "head_train_accuracy": train_acc, "head_test_accuracy": test_acc,
        "head_test_mean_max_prob": float(test_probs.max(1).mean()),
        "eval_images": int(len(chosen)), "eval_images_keras_accuracy": float(np.mean(full_model_probs.argmax(1) == y_te[chosen])),
        "eval_images_keras_mean_max_prob": float(full_model_probs.max(1).mean()),
        "bn_seconds": round(bn_seconds, 1), "prep_seconds": round(time.perf_counter() - start, 1),
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    (tmp_root / info_path.name).write_text(json.dumps(info, indent=2) + "\n")
    if root.exists():
        shutil.rmtree(root)
    tmp_root.rename(root)
    log(f"prepared in {info['prep_seconds']} s: head test accuracy {test_acc:.3f}")
    return Prepared(model_path, images, quick, info, False)


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

    CALIBRATED = ("int8", "int8_float_io", "int16x8")

    def __init__(self, args: argparse.Namespace, prepared: Prepared, tmp: Path) -> None:
        self.args = args
        self.quick = args.quick
        self.prepared = prepared
        self.tmp = tmp
        self.repeats = 1 if self.quick else args.repeats
        self.images_dir = prepared.quick_images if self.quick else prepared.images
        self.tables: list[Table] = []
        self.built: dict[str, bytes] = {}  # variant name -> quant_core bytes (for sizes, latency)
        self.bare_built: dict[str, bytes] = {}
        self._counter = 0
        self.n_images = 0
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

    def open_workbench(self, model: Path, images: Path, value_range: Any = None):
        from quant_core import CompareOptions, PreprocessingOverride, Workbench, load_images

        options = CompareOptions(threads=1, measure_latency=False,
                                 preprocessing=PreprocessingOverride(value_range=value_range))
        with _quiet.stdout_to_stderr():
            image_set = load_images([str(images)])
            seconds, bench = timed(lambda: Workbench.open(model, image_set, options=options, cache=self.fresh_cache()))
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
        from quant_core import metrics
        from quant_core.runner import TFLiteRunner

        info = self.prepared.info
        probs = bench.reference_probs
        labels = np.array(bench.labels.indices)
        entropy = float(np.mean(-np.sum(probs * np.log(np.clip(probs, 1e-12, 1)), axis=1)))
        uniform = np.allclose(probs, 1.0 / probs.shape[1], atol=1e-3)
        t = Table("0. MobileNetV2-size model (digits, BN recalibrated, head trained)", ["item", "value", "check"])
        t.rows += [
            ["model", f"keras.applications.MobileNetV2(weights=None, 224x224x3, classes=10), "
                      f"{info['params']:,} params", ""],
            ["prepared", "from cache" if self.prepared.cached else f"now, in {info['prep_seconds']} s",
             str(self.prepared.model.parent)],
            ["BN layers recalibrated", f"{info['bn_layers_changed']}/{info['bn_layers']} moving mean/var changed "
             f"({info['bn_images']} images); other weights unchanged: {info['non_bn_weights_unchanged']}",
             verdict(info["bn_layers_changed"] == info["bn_layers"] and info["non_bn_weights_unchanged"])],
            ["head (Dense) accuracy", f"train {info['head_train_accuracy']:.3f}, "
             f"test {info['head_test_accuracy']:.3f} on {info['test_images']} held-out digits, mean max prob "
             f"{info['head_test_mean_max_prob']:.2f} ({info['head_epochs']} epochs, {info['train_images']} train "
             "images; random-init conv features limit it)", ""],
            ["image set", f"{len(bench.x)} PNGs 224x224 RGB in class folders ({self.images_dir.name}); "
             f"preprocessing {bench.preprocessing.value_range.value} ({bench.preprocessing.source})", ""],
            ["float32 .tflite size", f"{len(bench.source.float_tflite) / 1e6:.2f} MB", ""],
            ["float32 .tflite softmax", f"mean max prob {probs.max(1).mean():.3f}, mean entropy {entropy:.3f} "
             f"(uniform = {np.log(probs.shape[1]):.3f}), {len(set(probs.argmax(1)))} distinct top-1 classes",
             verdict(not uniform and len(set(probs.argmax(1))) > 1)],
            ["float32 .tflite accuracy", f"{metrics.accuracy(probs, list(labels)):.3f} on {len(labels)} images", ""],
            ["Workbench.open", fmt_s(open_seconds), ""],
        ]
        for mode in ("int8", "int16x8"):
            for origin, store in (("bare converter", self.bare_built), ("quant_core", self.built)):
                model = store.get(f"{mode} (tf_converter)")
                if model is None:
                    t.rows.append([f"{mode} conversion ({origin})", "not built in --quick" if self.quick
                                   else "failed or not built", "" if self.quick else "MISS"])
                    continue
                runner = TFLiteRunner(model)
                n = min(16, len(bench.x))  # 16x8 runs on slow reference kernels
                p = metrics.to_probabilities(runner.predict(bench.x[:n]), bench.output_kind)
                agree = metrics.top1_agreement(p, probs[:n])
                ok = bool(np.all(np.isfinite(p))) and not np.allclose(p, 1.0 / p.shape[1], atol=1e-3)
                t.rows.append([f"{mode} conversion ({origin})",
                               f"ok, {len(model) / 1e6:.2f} MB, runs; top-1 agreement with float32 {agree:.3f}, "
                               f"accuracy {metrics.accuracy(p, list(labels[:n])):.3f} (first {n} images)", verdict(ok)])
        self.add(t)

    # -- 1 ------------------------------------------------------------------------------------
    def bench1(self, bench: Any, model_path: Path, label: str, *, tf_modes: list[str], lq_modes: list[str],
               float_row: bool, repeats: int) -> None:
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
        if label.startswith("MobileNetV2"):
            self.built.update(qc_bytes)
            self.bare_built.update(bare_bytes)

    # -- 2 ------------------------------------------------------------------------------------
    def bench2(self, bench: Any) -> None:
        from ai_edge_litert.interpreter import Interpreter

        from quant_core.runner import TFLiteRunner

        x = np.ascontiguousarray(np.concatenate([bench.x] * (EVAL_IMAGES // len(bench.x) + 1))[:EVAL_IMAGES])
        repeats = 3 if self.quick else 5
        threads_list = (1,) if self.quick else (1, 2)

        try:
            from quant_core.runner import batch_size as runner_batch_size
            runner_batch = runner_batch_size(x.shape[1:])
        except ImportError:  # older quant_core: a fixed batch of 64
            runner_batch = EVAL_BATCH

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
        t = Table(f"2a. Evaluation throughput: TFLiteRunner.predict vs bare batched Interpreter loop "
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
        t.notes.append(f"median of {repeats} timed repeats after one warm-up call each; runner and bare loops "
                       "alternate. The bare loops resize the input once per batch size (and for a shorter last "
                       "batch), as TFLiteRunner does.")
        if not same:
            t.notes.append(f"TFLiteRunner picks its batch from the input size: {runner_batch} images at "
                           f"{'x'.join(str(d) for d in x.shape[1:])}, so {EVAL_IMAGES} images are "
                           f"{-(-EVAL_IMAGES // runner_batch)} invokes with a shorter last batch (two resizes "
                           "and reallocations per call). The target compares with the brief's bare loop at batch "
                           f"{EVAL_BATCH}; the next column compares at the runner's own batch size.")
        self.add(t)

        lt = Table("2b. Per-image latency: TFLiteRunner.measure_latency (invoke only, batch 1)",
                   ["variant", "threads", "median ms", "p90 ms", "min ms", "runs"])
        budget = 0.5 if self.quick else 1.0
        for name in (default_name(m) for m in MODES):  # each mode with quant_core's default backend
            if name not in self.built:
                continue
            model = self.built[name]
            for threads in threads_list:
                log(f"bench 2: latency {name}, {threads} thread(s)")
                lat = TFLiteRunner(model, num_threads=threads).measure_latency(bench.x[:1], budget_s=budget)
                lt.rows.append([name, str(lat.threads), f"{lat.median_ms:.2f}", f"{lat.p90_ms:.2f}",
                                f"{lat.min_ms:.2f}", str(lat.runs)])
        lt.notes.append(f"5 warm-up runs, then at least 15 runs within a {budget:g} s budget (max 200); x86 with "
                        "XNNPACK, not a phone. Each mode with quant_core's default backend.")
        self.add(lt)

    # -- 3 ------------------------------------------------------------------------------------
    def bench3(self, bench: Any) -> None:
        from quant_core import Backend, Mode, Recipe

        def r(mode: str, count: int = 100, backend: Any = None) -> Any:
            return Recipe(Mode(mode), backend=backend, calibration_count=count).resolve(source_is_tflite=False)

        lq = Backend.LITERT_QUANTIZER
        low, high = (5, 10) if self.quick else (20, 40)
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
    def bench4(self) -> dict[str, Any]:
        out = self.tmp / "child.json"
        cache = self.tmp / "child-cache"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child-compare", str(self.prepared.model),
               str(self.images_dir), str(cache), str(out)]
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
            return {}
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
        return child

    # -- 5 ------------------------------------------------------------------------------------
    def bench5(self, bench: Any, child: dict[str, Any]) -> None:
        from quant_core import Backend, Mode, Recipe

        base = len(self.built["float32"])
        child_ratio = {(v["name"] if v["name"] == "float32" else f"{v['name']} ({v.get('backend')})"): v.get("size_ratio")
                       for v in child.get("variants", [])}
        log("bench 5: sizes (and an int8 per-tensor build for comparison)")
        recipe = Recipe(Mode.INT8, backend=Backend.TF_CONVERTER, per_channel=False).resolve(source_is_tflite=False)
        _, per_tensor = self.qc_build(bench, recipe, reset_calibration=False)
        t = Table("5. .tflite sizes relative to float32 (targets: int8 <= 0.28x, float16 <= 0.51x)",
                  ["variant", "default backend", "bytes", "ratio", "run_compare ratio", "target"])
        defaults = {default_name(m) for m in MODES}
        for name, model in [*self.built.items(), ("int8 (tf_converter) per-tensor", per_tensor)]:
            ratio = len(model) / base
            target = TARGET_SIZE.get(name.split(" ")[0])
            cr = child_ratio.get(name)
            if target is None:
                check = "-"
            elif name in defaults:
                check = f"{verdict(ratio <= target)} (<= {target})"
            else:
                check = f"(would {verdict(ratio <= target)}; not the default)"
            t.rows.append([name, "yes" if name in defaults else "", f"{len(model):,}", f"{ratio:.3f}x",
                           f"{cr:.3f}x" if cr else "-", check])
        t.notes.append("bytes from bench 1's quant_core builds (per-channel, default recipe: "
                       f"{min(100, self.n_images)} calibration samples); run_compare column from bench 4. The bare "
                       "engines give byte-identical files (bench 1).")
        t.notes.append("The target is judged on the row built with quant_core's default backend for the mode.")
        for name in ("int8 (tf_converter)", "int8 (tf_converter) per-tensor"):
            model = self.built[name] if name in self.built else per_tensor
            parts = size_breakdown(model)
            t.notes.append(f"{name} file of {len(model):,} bytes: " + ", ".join(f"{k} {v:,}" for k, v in parts.items()))
        self.add(t)


def size_breakdown(model: bytes) -> dict[str, int]:
    """Where a .tflite's bytes go: constant buffers by dtype and quantization parameters."""
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    root = schema.Model.GetRootAsModel(model, 0)
    out: dict[str, int] = {}
    params = 0
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
                params += q.ScaleLength()
    if params:
        out[f"quantization params ({params:,} scales; float32 scale + int64 zero point each)"] = params * 12
    out["graph and metadata (rest)"] = len(model) - sum(out.values())
    return out


_LAUNCHER = (
    "import json, resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)\n"
    "print(json.dumps({'rc': p.returncode, 'wall': time.perf_counter() - t, 'stderr': p.stderr[-3000:],\n"
    "                  'maxrss_kb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))\n"
)


def child_compare(model: str, images: str, cache: str, out: str, modes: str | None = None) -> None:
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
        result = run_compare(CompareRequest(model, (images,), options=CompareOptions(recipes=recipes, measure_latency=True)),
                             cache=ArtifactCache(Path(cache)), on_progress=progress)
    seconds = time.perf_counter() - start
    variants = [{
        "name": v.name, "backend": str(v.recipe.backend), "status": v.status, "error": v.error,
        "size_ratio": v.size_ratio,
        "top1_agreement": v.top1_agreement, "accuracy": v.accuracy, "build_seconds": v.build_seconds,
        "latency_ms": v.latency.median_ms if v.latency else None} for v in result.variants]
    Path(out).write_text(json.dumps({
        "seconds": seconds, "import_seconds": import_seconds, "images": len(result.images),
        "preprocessing": f"{result.preprocessing.value_range.value} ({result.preprocessing.source})",
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
    for extra in ("scikit-learn", "pillow"):
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
    parser.add_argument("--quick", action="store_true", help="smoke run: 20 images, 1 repeat, int8/weight_only only in benchmarks 1 and 4")
    parser.add_argument("--repeats", type=int, default=2,
                        help="repeats of each timed build in benchmarks 1 and 3 (full run; default 2)")
    parser.add_argument("--cache-dir", type=Path,
                        default=Path(os.environ.get("QUANT_BENCH_CACHE", Path(tempfile.gettempdir()) / "quant-bench")),
                        help="where the prepared model and images are cached (default $QUANT_BENCH_CACHE or "
                             "<tmp>/quant-bench)")
    parser.add_argument("--samples", action="store_true",
                        help="also run benchmark 1 on sample_models/*.keras (with sample_models/digits_images)")
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
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    prepared = prepare_model(args.cache_dir)
    tmp = Path(tempfile.mkdtemp(prefix="quant-bench-run-"))
    try:
        run = Run(args, prepared, tmp)
        from quant_core import ValueRange

        run.sample_contention("0")
        log("opening the workbench on the MobileNetV2-size model")
        bench, open_seconds = run.open_workbench(prepared.model, run.images_dir, ValueRange.MINUS_ONE_ONE)
        if args.quick:
            tf_modes, lq_modes = ["int8"], ["weight_only", "int8"]
        else:
            tf_modes = ["dynamic_range", "float16", "int8", "int8_float_io", "int16x8"]
            lq_modes = ["weight_only", "dynamic_range", "float16", "int8"]
        run.sample_contention("1")
        run.bench1(bench, prepared.model, "MobileNetV2-size, 224x224", tf_modes=tf_modes, lq_modes=lq_modes,
                   float_row=not args.quick, repeats=run.repeats)
        run.bench0(bench, open_seconds)
        run.tables.insert(0, run.tables.pop())  # model description first
        if args.samples:
            for sample in sorted((REPO / "sample_models").glob("*.keras")):
                images = REPO / "sample_models" / "digits_images"
                if images.is_dir():
                    log(f"bench 1 on {sample.name}")
                    small, _ = run.open_workbench(sample, images)
                    run.bench1(small, sample, f"sample_models/{sample.name}", tf_modes=tf_modes,
                               lq_modes=["weight_only"], float_row=True, repeats=run.repeats)
                    del small
        run.n_images = len(bench.x)
        run.sample_contention("2")
        run.bench2(bench)
        run.sample_contention("3")
        run.bench3(bench)
        run.sample_contention("4")
        child = run.bench4()
        if code_state() != code_at_start and run.tables[-1].title.startswith("4."):
            run.tables[-1].notes.append(f"quant_core changed during this run ({code_at_start} -> {code_state()}): "
                                        "this child imported the newer code.")
        run.bench5(bench, child)
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

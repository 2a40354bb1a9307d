"""Issue 14, measured: evaluating variants on thousands of images, locally and on Ray.

The set: N altered copies (crop, mirror, brightness) of the ImageNet sample's 22 bundled photos,
written as JPEG at their own size (~450 px, as ImageNet-val's are): no larger real labelled set
ships in a package here, so this is what stands in for one, and it is said so in the results.
The model: the bundled MobileNetV2 (ImageNet weights), variants float32, dynamic range, int8 and
float16 built on the 22 photos. Each executor scores the same variants on the same set:
  - local: this process, one shard after another (today's behaviour);
  - Ray with 1 CPU and with 2 CPUs (a local Ray, started for each and shut down after).
Printed: images/s, speed-up and scaling efficiency against Ray with 1 CPU, whether the numbers
are identical, Ray's per-task overhead (empty tasks), and the per-image costs (decode and
each of the seven variants, int16x8 included) behind a written plan for ImageNet-val x 7.

Usage: .venv/bin/python bench/bench_ray.py [--images 2000] [--no-write]
Writes its section of bench/RESULTS.md (between the ray-bench markers).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench"), str(REPO / "tests")]
from augmented import write_augmented  # noqa: E402  pylint: disable=wrong-import-position
from results_md import report  # noqa: E402  pylint: disable=wrong-import-position

SAMPLES = REPO / "sample_models"
MODEL, PHOTOS, LABELS = (SAMPLES / "mobilenet_v2_imagenet.keras", SAMPLES / "imagenet_images",
                         SAMPLES / "imagenet_labels.txt")
IMAGENET_VAL = 50_000


def _noop(task, shared):
    return task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    import numpy as np
    import ray

    from quant_core import CompareOptions, Mode
    from quant_core.cache import ArtifactCache
    from quant_core.compare import Workbench, measure_variants
    from quant_core.inputs.datasets import decode_entries, open_dataset
    from quant_core.serving.dataset_evaluation import evaluate_dataset
    from quant_core.serving.executors import LocalExecutor, RayExecutor
    from quant_core.inputs.images import load_images, read_labels_file
    from quant_core.inputs.preprocess import to_model_input
    from quant_core.recipe import compile_recipes
    from quant_core.runner import TFLiteRunner

    work = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    start = time.perf_counter()
    root = write_augmented(PHOTOS, work / "imagenet_aug", args.images, seed=0)
    dataset = open_dataset([root])
    print(f"wrote {len(dataset)} JPEGs in {time.perf_counter() - start:.0f} s", flush=True)

    names = read_labels_file(LABELS)
    all_modes = compile_recipes(list(Mode))
    options = CompareOptions(recipes=all_modes, measure_latency=False)
    bench = Workbench.open(MODEL, load_images([PHOTOS]), class_names=names, options=options,
                           cache=ArtifactCache(work / "cache"))
    result = measure_variants(bench, options, on_progress=lambda p: None)
    evaluated = [v for v in result.variants if v.ok and v.mode in
                 (Mode.FLOAT32, Mode.DYNAMIC_RANGE, Mode.INT8, Mode.FLOAT16)]
    models = bench.model_set(evaluated)

    # Per-image costs on 64 photos: decode + preprocess, then each variant's invoke (batch of 64, one thread).
    sample = list(range(0, len(dataset), max(1, len(dataset) // 64)))[:64]
    t = time.perf_counter()
    pixels = [p for _, p in decode_entries(dataset, sample) if isinstance(p, np.ndarray)]
    x = to_model_input(pixels, bench.preprocessing)
    decode_ms = 1000 * (time.perf_counter() - t) / len(pixels)
    costs = {}
    for v in result.variants:
        if not v.ok:
            continue
        runner = TFLiteRunner(bench.cache.model_bytes(v.tflite_sha256 or ""))
        runner.predict(x[:1])
        count = 8 if v.mode is Mode.INT16X8 else len(x)  # reference kernels: ~0.3 s per image
        t = time.perf_counter()
        runner.predict(x[:count])
        costs[v.name] = 1000 * (time.perf_counter() - t) / count
    print(f"decode+preprocess {decode_ms:.1f} ms/image; " + ", ".join(f"{k} {c:.1f}" for k, c in costs.items()),
          flush=True)

    runs, overhead_ms = {}, float("nan")
    for label, make in (("local executor (this process)", LocalExecutor),
                        ("Ray, 1 CPU", lambda: RayExecutor(cpus=1)),
                        ("Ray, 2 CPUs", lambda: RayExecutor(cpus=2))):
        executor = make()
        try:
            if isinstance(executor, RayExecutor):  # Ray's workers start with the first tasks: warm them first
                list(executor.run(_noop, list(range(4 * executor.workers)), None))
            evaluation = evaluate_dataset(dataset, models, num_classes=bench.source.info.num_classes,
                                          class_names=names, executor=executor)
            if label == "Ray, 2 CPUs":
                t = time.perf_counter()
                list(executor.run(_noop, list(range(400)), None))
                overhead_ms = 1000 * (time.perf_counter() - t) / 400
        finally:
            executor.close()
        runs[label] = evaluation
        print(f"{label}: {evaluation.images_per_second:.1f} images/s, {evaluation.seconds:.1f} s, "
              f"{len(evaluation.worker_names)} processes", flush=True)
    assert not ray.is_initialized()

    local = runs["local executor (this process)"]
    identical = all(r.variants == local.variants for r in runs.values())
    one = runs["Ray, 1 CPU"].images_per_second
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `bench/bench_ray.py` on this machine "
        f"({os.cpu_count()} CPUs, no GPU), Ray {ray.__version__}, in one run.",
        "",
        f"**The set**: {len(dataset):,} JPEGs made from the ImageNet sample's 22 bundled photos (random crop, mirror, "
        "brightness; each keeps its photo's label), at their own size (~450 px, as ImageNet-val's). No larger real "
        "labelled set ships in a package here, so this stands in for one: decode, preprocessing and inference cost "
        "what real photos cost; the accuracy numbers say nothing about ImageNet. **The model**: MobileNetV2 "
        f"(ImageNet weights); {', '.join(models.names)} scored on every image (4 models per image), "
        f"shards of 64 images.",
        "",
        "| executor | images/s | seconds | speed-up vs Ray 1 CPU | scaling efficiency | worker processes |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, r in runs.items():
        cpus = 2 if "2 CPUs" in label else 1
        speedup = r.images_per_second / one
        lines.append(f"| {label} | {r.images_per_second:.1f} | {r.seconds:.1f} | {speedup:.2f}x | "
                     f"{speedup / cpus:.0%} | {len(r.worker_names)} |")
    per_image = decode_ms + sum(costs.values())
    model_mb = sum(v.size_bytes or 0 for v in result.variants if v.ok) / 2**20
    lines += [
        "",
        f"- Same numbers from every executor (predictions per image and every metric): "
        f"**{'yes' if identical else 'NO'}**.",
        f"- Ray's per-task overhead: {overhead_ms:.1f} ms per empty task (400 tasks, 2 CPUs); a 64-image shard "
        f"costs ~{64 * (decode_ms + sum(costs[n] for n in models.names)) / 1000:.1f} s, so the overhead is "
        f"{overhead_ms / (64 * (decode_ms + sum(costs[n] for n in models.names))):.2%} of a shard.",
        f"- Per image, one thread: decode + preprocess {decode_ms:.1f} ms; "
        + ", ".join(f"{k} {c:.1f} ms" for k, c in costs.items()) + ".",
        "",
        "**Plan: ImageNet-val (50,000 images) x 7 variants.** One image through all seven costs "
        f"{per_image:.0f} ms of one core here ({decode_ms:.1f} ms decode, "
        f"{costs.get('int16x8', 0):.0f} ms of it int16x8 on reference kernels). Total: "
        f"{IMAGENET_VAL * per_image / 3.6e6:.1f} core-hours. At the 2-CPU efficiency measured above "
        f"({runs['Ray, 2 CPUs'].images_per_second / one / 2:.0%}):",
        "",
        "| cluster | cores | hours (all 7) | hours without int16x8 |",
        "|---|---:|---:|---:|",
    ]
    eff = runs["Ray, 2 CPUs"].images_per_second / one / 2
    without = per_image - costs.get("int16x8", 0.0)
    for nodes, cores in ((1, 2), (4, 8), (8, 16), (16, 32)):
        lines.append(f"| {nodes} node(s) x {cores // nodes} cores | {cores} | "
                     f"{IMAGENET_VAL * per_image / 3.6e6 / (cores * eff):.1f} | "
                     f"{IMAGENET_VAL * without / 3.6e6 / (cores * eff):.2f} |")
    lines += [
        "",
        "What limits scaling: (1) int16x8 dominates the cost (reference kernels, "
        f"{costs.get('int16x8', 0) / max(without, 1e-9):.0f}x the other six together, decode included): evaluate "
        "it on a subset, or leave it out of the first pass; (2) decode and preprocessing are paid once per image "
        "whatever the number of variants (a shard runs every variant on the images it decoded); (3) transfer: the "
        f"models travel once per node through Ray's object store (the seven MobileNetV2 variants are "
        f"{model_mb:.0f} MB), a shard sends back only top-5 classes and two errors per image and variant (~60 bytes), "
        "and workers read the images themselves from shared storage, so the driver does not carry pixels; the "
        "storage's read bandwidth is then the limit (ImageNet-val is 6.4 GB: 50,000 images in an hour is 1.8 MB/s); "
        "(4) the per-task overhead is negligible at 64 images per shard (above).",
    ]
    report("ray-bench", "Whole-dataset evaluation: local and Ray (issue 14)", "\n".join(lines),
           write=not args.no_write)


if __name__ == "__main__":
    main()

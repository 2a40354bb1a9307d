"""Many users with different models at once: 6 browser sessions on 4 models on one server.

The sessions start together, each a real Playwright browser context on loopback:
  - the ImageNet sample (MobileNetV2, 22 photos): the one-click comparison;
  - an upload of a small Keras model built here (the tests' colour classifier) with a .zip of 24 images;
  - an upload of a float .tflite (the digits MobileNet converted here) with a .zip of 40 digits,
    then the What if… per-channel toggle;
  - the digits CNN sample: the one-click comparison, then What if… int16x8 off and the calibration
    count moved to 1;
  - the digits CNN sample with another calibration count, then a Full dataset evaluation on 1,200 digits;
  - the ImageNet sample with another calibration count, whose browser closes once a worker works on its
    comparison (the progress bar tells the job's steps: seven variants of MobileNetV2 still to build).
The server runs the pool's defaults (2 warm workers, 2 jobs at once, a spare) with every worker capped
(QW_JOB_MEMORY_MB = QW_WORKER_KEEP_MB), so the process tree has a stated bound; QW_ABANDON_S is 2 s.
Measured: each session's time and its numbers against the engine run in this process afterwards,
/_stcore/health every 250 ms, the summed RSS of the server and all its workers (peak, sampled every
200 ms), the number of live workers, the workers left once every session ended (eviction), and how
long the worker of the session that left lived on. Then the slowest session runs alone on a fresh
server: "x alone" is its time in the crowd over that.

Usage: .venv/bin/python bench/bench_load.py [--no-write]
Writes its section of bench/RESULTS.md (between the load-bench markers).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]
from live_server import (Bound, HealthProbe, Outcome, TreeWatch, Upload, Visit, abandoned_workers,  # noqa: E402  pylint: disable=wrong-import-position
                         expected_rows, run_visits, streamlit_server, unexpected_errors, warm_up, zipped)
from results_md import write_section  # noqa: E402  pylint: disable=wrong-import-position

BOUND = Bound(warm_workers=2, workers=2, worker_mb=2560, server_mb=768)
ABANDON_S = 2
DIGITS = REPO / "sample_models" / "digits_images"
WARM_UP = "?sample=digits_cnn"


@dataclass(frozen=True)
class Files:
    """What the uploads and the Full dataset use, made in a temporary folder."""

    keras: Upload
    keras_images: Path  # the upload's images as a folder (the engine's expected numbers read it)
    tflite: Upload
    tflite_images: Path
    datasets: Path  # QW_DATASETS_DIR
    dataset_images: int


def make_files(root: Path, *, copies: int = 10) -> Files:
    """The tiny Keras model and its images, the digits MobileNet as a float .tflite with 40 digits, and a dataset
    of `copies` x the bundled digits (the compared images again: the evaluation's accuracy must equal the table's)."""
    import keras  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from PIL import Image  # pylint: disable=import-outside-toplevel

    from conftest import CLASSES, build_tiny_model, colour_images  # pylint: disable=import-outside-toplevel

    build_tiny_model().save(root / "tiny.keras")
    colours = root / "colours"
    images, labels = colour_images(24, seed=7)
    for k, (image, label) in enumerate(zip(images, labels)):
        (colours / CLASSES[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(colours / CLASSES[label] / f"{k:03d}.png")
    (root / "colours.txt").write_text("\n".join(CLASSES) + "\n")

    model = keras.models.load_model(REPO / "sample_models" / "digits_mobilenet.keras")
    (root / "digits_mobilenet.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    digits = root / "digits"
    for folder in sorted(p for p in DIGITS.iterdir() if p.is_dir()):
        (digits / folder.name).mkdir(parents=True)
        for path in sorted(folder.iterdir())[:4]:
            shutil.copy(path, digits / folder.name / path.name)

    datasets = root / "datasets"
    count = 0
    for copy in range(copies):
        for path in sorted(DIGITS.rglob("*.png")):
            target = datasets / f"digits_x{copies}" / path.parent.name / f"{copy}_{path.name}"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
            count += 1
    return Files(Upload(root / "tiny.keras", zipped(colours, root / "colours.zip"), root / "colours.txt"), colours,
                 Upload(root / "digits_mobilenet.tflite", zipped(digits, root / "digits.zip"),
                        REPO / "sample_models" / "digits_labels.txt"), digits, datasets, count)


def visits(files: Files) -> list[Visit]:
    """The six users."""
    return [
        Visit("ImageNet sample: one-click", "?sample=mobilenet_v2_imagenet"),
        Visit("Keras upload (tiny, 24 images): one-click", WARM_UP, files.keras),
        Visit("float .tflite upload (digits MobileNet, 40 images): one-click, per-channel off", WARM_UP,
              files.tflite, what_ifs=("per_channel",)),
        Visit("digits sample: one-click, int16x8 off, calibration 1", WARM_UP, what_ifs=("mode.int16x8", "cal_count")),
        Visit(f"digits sample (calibration 20): one-click, Full dataset on {files.dataset_images:,} images",
              f"{WARM_UP}&cal=20", evaluate=True),
        Visit("ImageNet sample (calibration 5): leaves once its job runs in a worker",
              "?sample=mobilenet_v2_imagenet&cal=5", leave=True),
    ]


@dataclass(frozen=True)
class Crowd:
    """The measured run of every visit at once."""

    outcomes: list[Outcome]
    wall_s: float
    health: dict[str, float]
    peak_total_mb: float
    peak_server_mb: float
    peak_worker_mb: float
    max_workers: int
    workers_after: int
    freed_s: float | None  # from the browser closing to its worker killed (None: not seen)
    load: tuple[float, float]  # 1-min load average before and after


def server_env(files: Files) -> dict[str, str]:
    return {**BOUND.env(), "QUANT_CACHE_DIR": tempfile.mkdtemp(prefix="qw-loadbench-cache-"),
            "QW_SESSION_ROOT": tempfile.mkdtemp(prefix="qw-loadbench-sessions-"),
            "QW_DATASETS_DIR": str(files.datasets), "QW_ABANDON_S": str(ABANDON_S)}


def crowd(files: Files, plans: list[Visit]) -> Crowd:
    """Every visit at once on a fresh server with an empty cache, after one warm-up page view."""
    before = os.getloadavg()[0]
    with streamlit_server(server_env(files)) as server:
        warm_up(server.url, WARM_UP)
        with HealthProbe(server.url) as health, TreeWatch(server.process.pid) as tree:
            start = time.perf_counter()
            outcomes = run_visits(server.url, plans, timeout_s=1800)
            wall = time.perf_counter() - start
            time.sleep(2)  # the last request's worker checked in, the least recently used one closed
            after = len(tree.workers())
        killed = abandoned_workers(server.log())
    left = next(o for o in outcomes if o.visit.leave)
    freed = killed[0][1] - left.left_at if len(killed) == 1 and left.left_at is not None else None
    return Crowd(outcomes, wall, health.summary(), tree.peak_total_mb, tree.peak_server_mb, tree.peak_worker_mb,
                 tree.max_workers, after, freed, (before, os.getloadavg()[0]))


def alone(files: Files, plan: Visit) -> float:
    """The visit's time alone on a fresh server (the same settings and warm-up)."""
    with streamlit_server(server_env(files)) as server:
        warm_up(server.url, WARM_UP)
        (outcome,) = run_visits(server.url, [plan], timeout_s=1800)
    return outcome.seconds


def correct(outcome: Outcome, files: Files, dataset_images: int) -> tuple[bool, str]:
    """Whether the session's table has the engine's numbers (and its evaluation the table's accuracies)."""
    if outcome.visit.leave:
        return not outcome.errors, "; ".join(outcome.errors)[:200]
    images = {files.keras.model: files.keras_images, files.tflite.model: files.tflite_images}
    want = expected_rows(outcome.visit, outcome.calibration,
                         images=images.get(outcome.visit.upload.model) if outcome.visit.upload else None)
    if errors := unexpected_errors(outcome, want):
        return False, "; ".join(errors)[:200]
    if list(outcome.rows) != list(want):
        return False, f"rows {list(outcome.rows)} != {list(want)}"
    for name, row in want.items():
        got = {k: outcome.rows[name].get(k) for k in row}
        if got != row:
            return False, f"{name}: {got} != {row}"
    if outcome.evaluation is not None:
        scores = {v["name"]: v for v in outcome.evaluation["variants"]}
        from quant_core.results.summary import ACCURACY  # pylint: disable=import-outside-toplevel

        if outcome.evaluation["evaluated"] != dataset_images or any(
                ACCURACY.format_number(scores[n]["accuracy"]) != r["accuracy"] for n, r in outcome.rows.items()):
            return False, "the Full dataset's accuracies differ from the table's"
    failed = [name for name, row in want.items() if row["status"] == "failed"]
    return True, f"{', '.join(failed)} failed, as in the engine" if failed else ""


def section(run: Crowd, checks: list[tuple[bool, str]], slowest: Outcome, slowest_alone: float) -> str:
    """bench/RESULTS.md's section."""
    h = run.health
    rows = []
    for outcome, (ok, note) in zip(run.outcomes, checks):
        what = f"left after {outcome.seconds:.1f} s" if outcome.visit.leave else f"{outcome.seconds:.1f} s"
        rows.append(f"| {outcome.visit.name} | {what} | {'yes' if ok else 'NO'} | {note} |")
    memory_ok = run.peak_total_mb <= BOUND.total_mb
    settings = ", ".join(f"{k}={v}" for k, v in BOUND.env().items())
    freed = f"{run.freed_s:.1f} s" if run.freed_s is not None else "not seen"
    lines = [
        f"| slowest session in the crowd / alone | {slowest.seconds:.1f} s / {slowest_alone:.1f} s = "
        f"**{slowest.seconds / slowest_alone:.2f}x** ({slowest.visit.name}) | - |",
        f"| /_stcore/health median / p99 / max ({h['count']} probes) | {h['median'] * 1000:.0f} / "
        f"{h['p99'] * 1000:.0f} / {h['max'] * 1000:.0f} ms | {'PASS' if h['max'] <= 1.0 else 'MISS'} (<= 1 s) |",
        f"| peak RSS, server + every worker (summed per sample) | {run.peak_total_mb:,.0f} MB | "
        f"{'PASS' if memory_ok else 'MISS'} (<= {BOUND.total_mb:,} MB) |",
        f"| peak RSS of the server alone / of the largest worker | {run.peak_server_mb:,.0f} / "
        f"{run.peak_worker_mb:,.0f} MB | {'PASS' if run.peak_server_mb <= BOUND.server_mb else 'MISS'} / "
        f"{'PASS' if run.peak_worker_mb <= BOUND.worker_mb else 'MISS'} |",
        f"| live worker processes, max | {run.max_workers} | "
        f"{'PASS' if run.max_workers <= BOUND.max_workers else 'MISS'} (<= {BOUND.max_workers}) |",
        f"| workers left once every session ended (4 models used) | {run.workers_after} | "
        f"{'PASS' if run.workers_after <= BOUND.warm_workers + 1 else 'MISS'} "
        f"(<= {BOUND.warm_workers} warm + 1 spare) |",
        f"| browser closed mid-run to its worker killed | {freed} | "
        f"{'PASS' if run.freed_s is not None and run.freed_s <= 60 else 'MISS'} "
        f"(<= 60 s with QW_ABANDON_S={ABANDON_S}) |",
    ]
    return (
        "## Many users, different models (load test)\n\n"
        f"Command: `.venv/bin/python bench/bench_load.py` ({datetime.now(UTC):%Y-%m-%d %H:%M UTC}, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; the browsers run on the same machine, "
        f"1-min load average {run.load[0]:.1f} before and {run.load[1]:.1f} after the crowd). Six Playwright browser "
        "sessions start together on a fresh server (empty cache, one warm-up view of the digits sample) with the "
        f"pool's defaults and every worker capped: {settings}, QW_ABANDON_S={ABANDON_S}. Time: from a "
        "session's first click (upload or run) to the end of its last step; every one-click comparison builds and "
        "measures all seven variants, latency included. \"correct\": the session's Compare table (status, size, "
        "agreement, accuracy) equals the engine's run in the bench process, its Full dataset accuracies the "
        "table's (the dataset is the compared digits ten times). Memory bound: a running job is killed above "
        "QW_JOB_MEMORY_MB and a warm worker above QW_WORKER_KEEP_MB is closed after its request, at most "
        "QW_WARM_WORKERS warm + QW_WORKERS running + 1 spare live, so the tree stays under "
        f"{BOUND.words}. The small version runs in CI (tests/test_load.py: 6 sessions on 4 models, no ImageNet).\n\n"
        f"Wall time of the crowd: {run.wall_s:.1f} s.\n\n"
        "| session | time | correct | note |\n|---|---:|:---:|---|\n" + "\n".join(rows) + "\n\n"
        "| measurement | value | target |\n|---|---:|:---:|\n" + "\n".join(lines))


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-write", action="store_true", help="print the section without writing RESULTS.md")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="qw-loadbench-files-"))
    files = make_files(root)
    plans = visits(files)
    run = crowd(files, plans)
    slowest = max((o for o in run.outcomes if not o.visit.leave), key=lambda o: o.seconds)
    slowest_alone = alone(files, slowest.visit)
    checks = [correct(o, files, files.dataset_images) for o in run.outcomes]
    body = section(run, checks, slowest, slowest_alone)
    print(body)
    if not args.no_write:
        write_section("load-bench", body)


if __name__ == "__main__":
    main()

"""Issue 27, measured: whole-dataset evaluation on a real multi-node Ray cluster on this machine, clean and faulted.

The cluster is tests/ray_cluster.py's LoopbackCluster: a head and more nodes, each its own
`ray start --block` process tree with 1 CPU, token authentication on, everything on 127.0.0.1.
The driver is tests/cluster_driver.py in a process of its own (a Ray driver is one per process),
given the variants built here. The set: N altered copies (crop, mirror, brightness) of the
ImageNet sample's 22 bundled photos, written as JPEG at their own size (as bench/bench_ray.py);
the model: the bundled MobileNetV2, variants float32, dynamic range, int8 and float16 built on
the 22 photos. Measured:
  - the local executor in this process (the reference numbers, image by image);
  - clusters of 1, 2 and 3 nodes (a fresh cluster each): images/s, speed-up over 1 node,
    efficiency (speed-up / nodes), whether every variant's numbers equal the local ones;
  - at 2 nodes, a node lost mid-run (frozen as soon as the driver starts, so it holds shards
    that make no progress, then killed once the driver reports images done): time against the
    clean 2-node run, every image scored once, the incident line;
  - at 2 nodes, the head killed mid-run (a third of the images done) with QW_RAY_HEAD_GRACE_S=3:
    seconds from the kill to the driver's exit, the images kept, and whether they are the local
    numbers.
The machine has few cores (2 here): more 1-CPU nodes than cores oversubscribe it, and the
driver and the nodes' Ray services share the same cores; the 1-minute load average is recorded
around every run.

Usage: .venv/bin/python bench/bench_cluster.py [--images 600] [--shard 16] [--no-write]
Writes its section of bench/RESULTS.md (between the cluster-bench markers).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench"), str(REPO / "tests")]
from augmented import write_augmented  # noqa: E402  pylint: disable=wrong-import-position
from cluster_driver import DriverJob  # noqa: E402  pylint: disable=wrong-import-position
from ray_cluster import LoopbackCluster, Node  # noqa: E402  pylint: disable=wrong-import-position
from results_md import report  # noqa: E402  pylint: disable=wrong-import-position

from quant_core.results.dataset_compare import DatasetEvaluation  # noqa: E402  pylint: disable=wrong-import-position

SAMPLES = REPO / "sample_models"
MODEL, PHOTOS, LABELS = (SAMPLES / "mobilenet_v2_imagenet.keras", SAMPLES / "imagenet_images",
                         SAMPLES / "imagenet_labels.txt")
DRIVER = REPO / "tests" / "cluster_driver.py"
NODE_COUNTS = (1, 2, 3)
HEAD_GRACE_S = 3


@dataclass(frozen=True)
class Built:
    """The variants and the set, built once in this process; what every driver is given."""

    models: Any  # quant_core.compare.ModelSet
    num_classes: int
    class_names: tuple[str, ...]
    dataset: Path
    images: int
    shard: int


@dataclass(frozen=True)
class Driven:
    """What one driver process did."""

    found: dict  # its JSON: {"evaluation": ...} or {"error": ...}
    wall_s: float  # the driver process, start to exit (joining Ray included)
    done_lines: int  # "done N" lines the driver printed: one per shard finished
    kill_at: int | None = None  # images done when the fault was played
    kill_to_result_s: float | None = None  # from the SIGKILL to the driver's result written
    kill_to_exit_s: float | None = None  # from the SIGKILL to the driver's exit
    steady: float | None = None  # images/s from the first shard back to the last (workers warm)


@dataclass(frozen=True)
class Run:
    """One driver process on one cluster."""

    label: str
    nodes: int
    evaluation: DatasetEvaluation | None
    error: str | None
    driven: Driven
    start_s: float  # starting the cluster
    load: tuple[float, float]  # 1-minute load average before and after the driver ran


def _build(args: argparse.Namespace, work: Path) -> Built:
    """The four variants on the 22 photos, and the augmented set."""
    from quant_core import CompareOptions, Mode
    from quant_core.cache import ArtifactCache
    from quant_core.compare import Workbench, measure_variants
    from quant_core.inputs.images import load_images, read_labels_file
    from quant_core.recipe import compile_recipes

    start = time.perf_counter()
    root = write_augmented(PHOTOS, work / "imagenet_aug", args.images, seed=0)
    print(f"wrote {args.images} JPEGs in {time.perf_counter() - start:.0f} s", flush=True)
    names = read_labels_file(LABELS)
    modes = (Mode.FLOAT32, Mode.DYNAMIC_RANGE, Mode.INT8, Mode.FLOAT16)
    options = CompareOptions(recipes=compile_recipes(modes), measure_latency=False)
    bench = Workbench.open(MODEL, load_images([PHOTOS]), class_names=names, options=options,
                           cache=ArtifactCache(work / "cache"))
    result = measure_variants(bench, options, on_progress=lambda p: None)
    failed = [f"{v.name}: {v.error}" for v in result.variants if not v.ok]
    if failed:
        raise SystemExit(f"a variant failed to build: {failed}")
    return Built(bench.model_set(result.variants), bench.source.info.num_classes, tuple(names), root, args.images,
                 args.shard)


def _local(built: Built) -> tuple[DatasetEvaluation, float | None]:
    """The local executor in this process: the reference numbers, and its images/s after the first shard."""
    from quant_core.inputs.datasets import open_dataset
    from quant_core.serving.dataset_evaluation import evaluate_dataset
    from quant_core.serving.executors import LocalExecutor

    seen: list[tuple[int, float]] = []
    evaluation = evaluate_dataset(open_dataset([built.dataset]), built.models, num_classes=built.num_classes,
                                  class_names=built.class_names, executor=LocalExecutor(), shard_size=built.shard,
                                  on_progress=lambda p: seen.append((p.done, p.seconds)))
    return evaluation, steady_rate(seen)


def _drive(built: Built, cluster: LoopbackCluster, work: Path, *, freeze: Node | None = None,
           kill: Callable[[], None] | None = None, after: int = 1,
           env: dict[str, str] | None = None) -> Driven:
    """Runs the driver; freezes `freeze` once it starts, plays `kill` once `after` images are done."""
    out, job_file = work / "out.json", work / "job.pickle"
    out.unlink(missing_ok=True)
    job = DriverJob(built.models, built.num_classes, built.class_names, str(built.dataset), cluster.address,
                    str(out), shard_size=built.shard, marker=str(work / "hung"))
    job_file.write_bytes(pickle.dumps(job))
    begin = time.monotonic()
    with (work / "driver.err").open("a") as err:
        process = subprocess.Popen([sys.executable, str(DRIVER), str(job_file)], stdout=subprocess.PIPE, stderr=err,
                                   text=True, cwd=REPO, env=os.environ | cluster.env | (env or {}))
    if freeze is not None:
        freeze.freeze()
    lines, kill_at, killed, killed_epoch, seen = 0, None, None, 0.0, []
    assert process.stdout is not None
    for line in process.stdout:  # Ray may print what it saw (a node marked dead): only "done N" counts
        if not line.startswith("done "):
            continue
        lines += 1
        seen.append((int(line.split()[1]), time.monotonic()))
        if kill is not None and int(line.split()[1]) >= after:
            kill_at, killed, killed_epoch = int(line.split()[1]), time.monotonic(), time.time()
            kill()
            kill = None
    process.wait(timeout=900)
    end = time.monotonic()
    if not out.exists():
        return Driven({"error": f"the driver exited {process.returncode} without a result (see {work}/driver.err)"},
                      end - begin, lines, kill_at)
    return Driven(json.loads(out.read_text()), end - begin, lines, kill_at,
                  None if killed is None else out.stat().st_mtime - killed_epoch,
                  None if killed is None else end - killed, steady_rate(seen))


def steady_rate(seen: list[tuple[int, float]]) -> float | None:
    """Images/s between the first shard back and the last ((images done, when) pairs): warm workers only."""
    if len(seen) < 2 or seen[-1][1] <= seen[0][1]:
        return None
    return (seen[-1][0] - seen[0][0]) / (seen[-1][1] - seen[0][1])


def _run(label: str, built: Built, work: Path, *, nodes: int, fault: str | None = None) -> Run:
    """A fresh cluster of `nodes` 1-CPU nodes, one driver on it (with `fault`: "node" or "head"), then stopped."""
    start = time.monotonic()
    cluster = LoopbackCluster().start(nodes=nodes, cpus=1)
    start_s = time.monotonic() - start
    before = os.getloadavg()[0]
    try:
        if fault == "node":
            victim = cluster.nodes[1]
            driven = _drive(built, cluster, work, freeze=victim, kill=victim.kill, after=1)
        elif fault == "head":
            driven = _drive(built, cluster, work, kill=cluster.head.kill, after=built.images // 3,
                            env={"QW_RAY_HEAD_GRACE_S": str(HEAD_GRACE_S)})
        else:
            driven = _drive(built, cluster, work)
    finally:
        cluster.stop()
    found = driven.found
    evaluation = DatasetEvaluation.from_dict(found["evaluation"]) if "evaluation" in found else None
    run = Run(label, nodes, evaluation, found.get("error"), driven, start_s, (before, os.getloadavg()[0]))
    _say(run)
    return run


def _say(run: Run) -> None:
    e, d = run.evaluation, run.driven
    if e is None:
        print(f"{run.label}: error: {run.error}", flush=True)
        return
    print(f"{run.label}: {e.evaluated} images in {e.seconds:.1f} s ({e.images_per_second:.1f} images/s), "
          f"driver {d.wall_s:.1f} s, {len(e.worker_names)} worker processes, cluster up in {run.start_s:.0f} s"
          + (f"; fault at {d.kill_at} images, result {d.kill_to_result_s:.1f} s and exit {d.kill_to_exit_s:.1f} s "
             "after" if d.kill_at is not None else "") + "".join(f"\n  incident: {i}" for i in e.incidents)
          + (f"\n  stopped: {e.stopped_because}" if e.stopped_because else ""), flush=True)


def same_numbers(found: DatasetEvaluation, local: DatasetEvaluation) -> bool:
    """Every VariantScore equal (predictions per image and every metric), same images and labels."""
    return (found.variants == local.variants and found.images == local.images and found.labels == local.labels)


def same_where_read(found: DatasetEvaluation, local: DatasetEvaluation) -> bool:
    """A run stopped early: the images it did score have the local predictions."""
    return [v.name for v in found.variants] == [v.name for v in local.variants] and all(
        all(t == u for t, u in zip(mine.top1, theirs.top1) if t >= 0)
        for mine, theirs in zip(found.variants, local.variants))


def _yes(flag: bool) -> str:
    return "yes" if flag else "**NO**"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _scaling_table(local: DatasetEvaluation, local_steady: float | None, local_load: tuple[float, float],
                   clean: list[Run]) -> list[str]:
    rows = ["| run | nodes x CPUs | images | seconds | images/s | images/s after the first shard | "
            "speed-up vs 1 node | efficiency | worker processes | numbers equal local | load before / after |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|:---:|---:|",
            f"| local executor (this process) | - | {local.evaluated} | {local.seconds:.1f} | "
            f"{local.images_per_second:.1f} | {_rate(local_steady)} | - | - | 1 | (reference) | "
            f"{local_load[0]:.1f} / {local_load[1]:.1f} |"]
    one = next((r.evaluation.images_per_second for r in clean if r.nodes == 1 and r.evaluation), None)
    for r in clean:
        e = r.evaluation
        if e is None:
            rows.append(f"| {r.label} | {r.nodes} x 1 | error: {r.error} | | | | | | | | |")
            continue
        speedup = e.images_per_second / one if one else float("nan")
        rows.append(f"| {r.label} | {r.nodes} x 1 | {e.evaluated} | {e.seconds:.1f} | {e.images_per_second:.1f} | "
                    f"{_rate(r.driven.steady)} | {speedup:.2f}x | {speedup / r.nodes:.0%} | {len(e.worker_names)} | "
                    f"{_yes(same_numbers(e, local))} | {r.load[0]:.1f} / {r.load[1]:.1f} |")
    return rows


def _node_fault_lines(run: Run, clean: list[Run], local: DatasetEvaluation, shards: int) -> list[str]:
    e, d = run.evaluation, run.driven
    if e is None:
        return [f"- **A node lost mid-run** (2 nodes): the run failed: {run.error}"]
    seconds = {r.nodes: r.evaluation.seconds for r in clean if r.evaluation is not None}
    versus = (f" against {seconds[2]:.1f} s for the clean 2-node run ({e.seconds / seconds[2]:.2f}x) and "
              f"{seconds[1]:.1f} s for 1 node" if 1 in seconds and 2 in seconds else "")
    incidents = "; ".join(f'"{i}"' for i in e.incidents) or "**none**"
    return [f"- **A node lost mid-run** (the second node frozen as the driver started, holding the shards handed "
            f"to it, and killed with its whole process tree once the driver reported {d.kill_at} images done): "
            f"{e.evaluated} of {len(e.images)} images scored in {e.seconds:.1f} s{versus}; the driver wrote its "
            f"result {d.kill_to_result_s:.1f} s after the kill (process {d.wall_s:.1f} s in all). Every image "
            f"scored once, with the local numbers image by image: {_yes(same_numbers(e, local) and not e.cancelled)};"
            f" every shard reported once: {_yes(d.done_lines == shards)} ({d.done_lines} of {shards}); "
            f"worker processes that ran shards: {len(e.worker_names)}. The incident line: {incidents}."]


def _head_fault_lines(run: Run, local: DatasetEvaluation) -> list[str]:
    e, d = run.evaluation, run.driven
    if e is None:
        return [f"- **The head lost mid-run**: the driver ended without an evaluation: {run.error}"]
    return [f"- **The head lost mid-run** (QW_RAY_HEAD_GRACE_S={HEAD_GRACE_S}; the head's whole process tree killed "
            f"once the driver reported {d.kill_at} images done): the driver wrote its result "
            f"{d.kill_to_result_s:.1f} s after the kill and **exited {d.kill_to_exit_s:.1f} s after it**, keeping "
            f"{e.evaluated} of {len(e.images)} images (stopped: {_yes(e.cancelled)}; the kept images have the "
            f"local predictions: {_yes(same_where_read(e, local))}). Its line: \"{e.stopped_because}\"."]


def _section(built: Built, local: tuple[DatasetEvaluation, float | None], local_load: tuple[float, float],
             clean: list[Run], node_fault: Run, head_fault: Run) -> str:
    import ray

    cores = os.cpu_count() or 0
    shards = -(-built.images // built.shard)
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `bench/bench_cluster.py` on this machine ({cores} "
        f"cores, no GPU), Ray {ray.__version__}, in one run. Every node is a `ray start` process tree with 1 CPU "
        f"on 127.0.0.1 (token authentication on); a fresh cluster for every run; the driver is "
        "`tests/cluster_driver.py` in its own process. **This machine has "
        f"{cores} cores: {max(NODE_COUNTS)} nodes oversubscribe it** (and the driver and each node's Ray services "
        "share the same cores), so the 3-node row measures contention, not a third machine. The machine is shared "
        "with other work: the 1-minute load average before and after each run is in the table.",
        "",
        f"**The set**: {built.images:,} JPEGs made from the ImageNet sample's 22 bundled photos (random crop, "
        "mirror, brightness), as in the Ray bench above. **The model**: MobileNetV2 (ImageNet weights); "
        f"{', '.join(built.models.names)} scored on every image, shards of {built.shard} images ({shards} shards). "
        "A cluster run's seconds are the driver's evaluation, from the first task handed out to the last result "
        "(cold workers included: each node starts its worker and loads the models with its first shard, as on any "
        "fresh cluster); joining the cluster is in the driver's process time below.",
        "",
        *_scaling_table(*local, local_load, clean),
        "",
        "Starting the cluster took " + ", ".join(f"{r.start_s:.0f} s ({r.nodes} node{'s' * (r.nodes > 1)})"
                                                  for r in clean)
        + "; the driver process (start, join, evaluate, exit) took "
        + ", ".join(f"{r.driven.wall_s:.0f} s" for r in clean) + ".",
        "",
        "Faults, each on a fresh 2-node cluster:",
        "",
        *_node_fault_lines(node_fault, clean, local[0], shards),
        *_head_fault_lines(head_fault, local[0]),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--shard", type=int, default=16, help="images per shard (the driver's default)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    built = _build(args, work)
    before = os.getloadavg()[0]
    local, local_steady = _local(built)
    local_load = (before, os.getloadavg()[0])
    print(f"local executor: {local.evaluated} images in {local.seconds:.1f} s "
          f"({local.images_per_second:.1f} images/s)", flush=True)
    print(f"this machine has {os.cpu_count()} cores: {max(NODE_COUNTS)} nodes of 1 CPU oversubscribe it", flush=True)
    clean = [_run(f"Ray cluster, {n} node{'s' if n > 1 else ''}", built, work, nodes=n) for n in NODE_COUNTS]
    node_fault = _run("2 nodes, one killed mid-run", built, work, nodes=2, fault="node")
    head_fault = _run("2 nodes, the head killed mid-run", built, work, nodes=2, fault="head")
    report("cluster-bench", "Whole-dataset evaluation on a multi-node Ray cluster, with faults (issue 27)",
           _section(built, (local, local_steady), local_load, clean, node_fault, head_fault), write=not args.no_write)
    if all(r.evaluation is not None for r in (*clean, node_fault, head_fault)):  # else keep driver.err to read
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

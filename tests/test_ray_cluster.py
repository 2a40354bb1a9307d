"""A real multi-node Ray cluster on loopback: the local executor's numbers image by image, and faults held.

The cluster (tests/ray_cluster.py) is a head and a second node, each its own `ray start`
process tree with 1 CPU, token authentication on, everything on 127.0.0.1. The drivers are
processes of their own (the CLI, or tests/cluster_driver.py, which can slow shards down and
hang one), as a Ray driver is one per process. The set is 320 altered copies of the digits
photos, in 20 shards of 16.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest

from augmented import write_augmented
from cluster_driver import DriverJob
from conftest import REPO
from quant_core.cache import ArtifactCache
from quant_core.compare import Workbench, measure_variants
from quant_core.inputs.datasets import open_dataset
from quant_core.modes import Mode
from quant_core.recipe import compile_recipes
from quant_core.request import CompareOptions
from quant_core.results.dataset_compare import DatasetEvaluation
from quant_core.serving.dataset_evaluation import evaluate_dataset
from quant_core.serving.executors import LocalExecutor
from processes import listening_sockets, loopback, process_tree
from ray_cluster import LoopbackCluster

pytest.importorskip("ray")

MODEL = REPO / "sample_models" / "digits_cnn.keras"
DIGITS = REPO / "sample_models" / "digits_images"
IMAGES, SHARD, SAMPLE = 320, 16, 30  # the variants are built on a sample of 30, as the CLI's --sample 30
DRIVER = Path(__file__).with_name("cluster_driver.py")


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    return write_augmented(DIGITS, tmp_path_factory.mktemp("generated") / "digits", IMAGES, seed=3, flip=False)


@pytest.fixture(scope="module")
def built(generated, tmp_path_factory):
    options = CompareOptions(recipes=compile_recipes((Mode.FLOAT32, Mode.DYNAMIC_RANGE, Mode.INT8)),
                             measure_latency=False)
    bench = Workbench.open(MODEL, open_dataset([generated]).sample(SAMPLE), options=options,
                           cache=ArtifactCache(tmp_path_factory.mktemp("cache")))
    result = measure_variants(bench, options, on_progress=lambda p: None)
    assert all(v.ok for v in result.variants), [v.error for v in result.variants]
    return bench, bench.model_set(result.variants)


@pytest.fixture(scope="module")
def local_result(built, generated) -> DatasetEvaluation:
    bench, models = built
    return evaluate_dataset(open_dataset([generated]), models, num_classes=bench.source.info.num_classes,
                            class_names=bench.labels.class_names, executor=LocalExecutor(), shard_size=SHARD)


@pytest.fixture(scope="module")
def cluster():
    cluster = LoopbackCluster().start(nodes=2, cpus=1)
    yield cluster
    cluster.stop()


def _drive(built, generated, cluster: LoopbackCluster, tmp_path: Path, *, kill=None, after: int = 0,
           env: dict[str, str] | None = None, **faults) -> tuple[dict, list[str]]:
    """Runs tests/cluster_driver.py on the cluster; `kill()` once `after` images are done. (its JSON, its stdout)."""
    bench, models = built
    out = tmp_path / "out.json"
    job = DriverJob(models, bench.source.info.num_classes, bench.labels.class_names, str(generated),
                    cluster.address, str(out), shard_size=SHARD, marker=str(tmp_path / "hung"), **faults)
    (tmp_path / "job.pickle").write_bytes(pickle.dumps(job))
    process = subprocess.Popen([sys.executable, str(DRIVER), str(tmp_path / "job.pickle")], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True, cwd=REPO,
                               env=os.environ | cluster.env | (env or {}))
    lines = []  # "done N" lines only (Ray prints what it saw to the driver too, e.g. a node marked dead)
    assert process.stdout is not None
    for line in process.stdout:
        if not line.startswith("done "):
            continue
        lines.append(line.strip())
        if kill is not None and int(line.split()[1]) >= after:
            kill()
            kill = None
    process.wait(timeout=300)
    return json.loads(out.read_text()), lines


def _same_numbers(found: DatasetEvaluation, local: DatasetEvaluation) -> None:
    assert [s.name for s in found.variants] == [s.name for s in local.variants]
    for x, y in zip(found.variants, local.variants):
        assert x == y, x.name  # predictions per image and every metric, exactly
    assert found.images == local.images and found.labels == local.labels


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "quant_core", *args], capture_output=True, text=True, cwd=REPO,
                          env=os.environ | env, timeout=600)


def test_an_address_where_nothing_listens_is_refused_in_one_line():
    done = _cli(["compare", str(MODEL), "--images", str(DIGITS), "--executor", "ray", "--ray-address",
                 "127.0.0.1:1", "--no-latency"], {})
    assert done.returncode == 2 and not done.stdout
    assert done.stderr.strip().splitlines()[-1] == "error: cannot reach the Ray cluster at 127.0.0.1:1: " \
                                                    "Connection refused"


def test_a_cluster_that_refuses_the_token_is_one_line(cluster):
    done = _cli(["compare", str(MODEL), "--images", str(DIGITS), "--executor", "ray", "--ray-address",
                 cluster.address, "--no-latency"], {"RAY_AUTH_MODE": "disabled"})
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: the Ray cluster at {cluster.address} refused this process's token: set RAY_AUTH_MODE=token and "
        "RAY_AUTH_TOKEN_PATH (or RAY_AUTH_TOKEN) as on the cluster's nodes")


def test_every_part_of_the_cluster_listens_on_loopback_only(cluster):
    """Every listening TCP socket of every node's processes (GCS, raylets, agents, workers) is on 127.0.0.1."""
    listening = listening_sockets([pid for node in cluster.nodes for pid in process_tree(node.process.pid)])
    names = {name for name, _ in listening}
    assert {"gcs_server", "raylet"} <= names, names  # Ray's own services were found, so the check means something
    exposed = [(name, address) for name, address in listening if not loopback(address)]
    assert not exposed, f"listening beyond this machine: {exposed}"


def test_cli_on_the_cluster_gives_the_local_numbers(cluster, generated, local_result, tmp_path):
    done = _cli(["compare", str(MODEL), "--images", str(generated), "--modes", "float32,dynamic_range,int8",
                 "--sample", str(SAMPLE), "--no-latency", "--cache-dir", str(tmp_path / "cache"), "--executor", "ray",
                 "--ray-address", cluster.address, "--report-json", str(tmp_path / "ray.json")], cluster.env)
    assert done.returncode == 0, done.stderr
    assert f"whole set: {IMAGES} of {IMAGES} images; ray (2 CPUs, cluster at {cluster.address})" in done.stdout
    evaluation = DatasetEvaluation.from_dict(json.loads((tmp_path / "ray.json").read_text())["evaluation"])
    _same_numbers(evaluation, local_result)  # the CLI's variants, scored on the cluster = this process's, locally
    assert evaluation.evaluated == IMAGES and not evaluation.incidents


def test_a_node_killed_mid_run_loses_nothing_and_is_reported(cluster, built, generated, local_result, tmp_path):
    victim = cluster.nodes[1]
    found, lines = _drive(built, generated, cluster, tmp_path, kill=victim.kill, after=3 * SHARD, pause_s=0.4)
    evaluation = DatasetEvaluation.from_dict(found["evaluation"])
    assert victim.process.poll() is not None  # the node is really gone, mid-run
    assert int(lines[-1].split()[1]) == IMAGES and len(lines) == IMAGES // SHARD  # every shard reported once
    _same_numbers(evaluation, local_result)  # nothing lost or counted twice, image by image
    assert not evaluation.cancelled and evaluation.evaluated == IMAGES
    assert any("was lost during the run; Ray ran the tasks it held again on the other nodes" in line
               for line in evaluation.incidents), evaluation.incidents
    cluster.add_node(cpus=1)  # as it was, for the tests after


def test_a_hung_task_is_stopped_and_run_again(cluster, built, generated, local_result, tmp_path):
    found, _ = _drive(built, generated, cluster, tmp_path, hang_once=4 * SHARD, env={"QW_SHARD_TIMEOUT_S": "5"})
    evaluation = DatasetEvaluation.from_dict(found["evaluation"])
    assert (tmp_path / "hung").exists()  # a worker really hung on the shard
    _same_numbers(evaluation, local_result)
    assert evaluation.incidents == ("task 5 was not back within 5 s: its worker was stopped and the task ran again",)


def test_cli_with_the_head_killed_mid_run_prints_what_it_has_and_one_error_line(generated, tmp_path):
    """The second node is frozen so the run cannot end by itself; the head is killed once images are done."""
    lonely = LoopbackCluster().start(nodes=2, cpus=1)
    try:
        lonely.nodes[1].freeze()
        process = subprocess.Popen(
            [sys.executable, "-m", "quant_core", "compare", str(MODEL), "--images", str(generated), "--modes",
             "float32,int8", "--sample", "30", "--no-latency", "--executor", "ray", "--ray-address", lonely.address,
             "--report-json", str(tmp_path / "report.json"), "-v"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
            env=os.environ | lonely.env | {"QW_RAY_HEAD_GRACE_S": "3"})
        assert process.stderr is not None
        errors = []
        for line in process.stderr:
            errors.append(line.rstrip("\n"))
            if f" of {IMAGES} images" in line:
                lonely.head.kill()
                break
        out, rest = process.communicate(timeout=300)
        errors += rest.splitlines()
    finally:
        lonely.stop()
    assert process.returncode == 1
    report = json.loads((tmp_path / "report.json").read_text())["evaluation"]
    assert report["cancelled"] and 0 < report["evaluated"] < IMAGES
    assert errors[-1] == (f"error: the Ray head at {lonely.address} stopped answering: the evaluation stopped, keeping "
                          f"the shards done; the numbers above cover the {report['evaluated']:,} images evaluated of "
                          f"{IMAGES}")
    assert f"whole set: {report['evaluated']} of {IMAGES} images (stopped: the Ray head" in out  # the table is printed


IDLE_HEAD_LOST = """
import operator, sys
from ray_cluster import LoopbackCluster
cluster = LoopbackCluster().start(nodes=2, cpus=1)
import os
os.environ.update(cluster.env)
from quant_core.errors import QuantError
from quant_core.serving.executors import RayExecutor
try:
    executor = RayExecutor(address=cluster.address)
    print("first", sorted(r for _, r in executor.run(operator.add, [1, 2], 10)), flush=True)
    cluster.head.kill()
    try:
        next(executor.run(operator.add, [1], 1))
    except QuantError as err:
        print("next:", err, flush=True)
finally:
    cluster.stop()
"""


def test_a_head_lost_between_runs_is_one_line_on_the_next_run():
    """Ray ends a process that uses a connection whose head is gone: the next run looks first, and says so."""
    done = subprocess.run([sys.executable, "-c", IDLE_HEAD_LOST], capture_output=True, text=True, cwd=REPO,
                          env=os.environ | {"PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}"}, timeout=300)
    lines = [line for line in done.stdout.splitlines() if line.startswith(("first", "next:"))]
    assert done.returncode == 0, done.stderr[-2000:]
    assert lines[0] == "first [11, 12]"
    assert re.fullmatch(r"next: cannot reach the Ray cluster at 127\.0\.0\.1:\d+: Connection refused", lines[1]), lines

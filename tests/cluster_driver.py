"""A whole-dataset evaluation joining a Ray cluster, as its own process (the cluster tests' and bench's driver).

`python tests/cluster_driver.py JOB.pickle` reads a `DriverJob` (the built variants, the
dataset, the cluster's address and the faults to play), prints "done N" after every shard
and writes the `DatasetEvaluation` as JSON, or the one-line error, to the job's `out`.
Its own process, as the CLI and the app's workers are: a Ray driver is one per process.
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quant_core.compare import ModelSet
from quant_core.errors import QuantError
from quant_core.inputs.datasets import open_dataset
from quant_core.serving.dataset_evaluation import Shard, evaluate_dataset, evaluate_shard


@dataclass(frozen=True)
class DriverJob:
    models: ModelSet
    num_classes: int
    class_names: tuple[str, ...] | None
    dataset: str
    address: str
    out: str
    shard_size: int = 16
    pause_s: float = 0.0  # every shard takes at least this long (so a test can act mid-run)
    hang_once: int | None = None  # the first shard starting here hangs, the first time it is given
    marker: str = ""  # where the hang is remembered (a file: the retry runs in another process)


def played(shard: Shard, models: ModelSet, *, pause_s: float, hang_once: int | None, marker: str):
    """evaluate_shard, slowed down, and hanging once on one shard."""
    if shard.start == hang_once and not os.path.exists(marker):
        Path(marker).write_text(str(os.getpid()))
        time.sleep(3600)
    time.sleep(pause_s)
    return evaluate_shard(shard, models)


def main(job_file: str) -> int:
    from ray import cloudpickle  # pylint: disable=import-outside-toplevel

    from quant_core.serving.executors import RayExecutor  # pylint: disable=import-outside-toplevel

    job: DriverJob = pickle.loads(Path(job_file).read_bytes())
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the cluster's workers cannot import this file
    try:
        executor = RayExecutor(address=job.address)
        shard_fn = functools.partial(played, pause_s=job.pause_s, hang_once=job.hang_once, marker=job.marker)
        evaluation = evaluate_dataset(open_dataset([job.dataset]), job.models, num_classes=job.num_classes,
                                      class_names=job.class_names, executor=executor, shard_size=job.shard_size,
                                      shard_fn=shard_fn, on_progress=lambda p: print(f"done {p.done}", flush=True))
        executor.close()
    except QuantError as err:
        Path(job.out).write_text(json.dumps({"error": str(err)}))
        return 2
    Path(job.out).write_text(json.dumps({"evaluation": evaluation.to_dict()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

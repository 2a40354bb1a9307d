"""Many users with different models at once: 6 browser sessions on 4 models on one server.

Small version of bench/bench_load.py: two uploads (the tiny Keras model and its float .tflite, each with
a .zip of labelled images), the digits CNN sample with what-ifs and with a Full dataset evaluation, and
the digits MobileNet sample, alone and with a browser that closes while its comparison runs; small calibration
counts and few variants where a link can choose them. The ImageNet sample is in the bench only: this
takes ~2 min on 2 busy cores without it, and MobileNetV2's conversions would add about a minute.
Every session's table is checked against the engine run in this process; /_stcore/health stays fast;
the summed RSS of the server and all its worker processes stays under the bound the pool's settings
give; no more workers live than the pool allows, and after the run only the warm ones and the spare;
the worker of the session that left is killed. Loopback only, stops by itself.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from conftest import REPO
from live_server import (CHROMIUM, Bound, HealthProbe, TreeWatch, Upload, Visit, abandoned_workers, alive,
                         expected_rows, run_visits, streamlit_server, unexpected_errors, warm_up, zipped)
from quant_core.results.summary import ACCURACY

pytestmark = pytest.mark.browser

BOUND = Bound(warm_workers=2, workers=2, worker_mb=1536, server_mb=768)
log = logging.getLogger(__name__)
ABANDON_S = 2  # QW_ABANDON_S: a run whose browser left is stopped this long after (30 s by default)
FREED_WITHIN_S = 120  # from the browser closing to its worker killed: ABANDON_S, the gaps between progress reports


def visits(keras: Path, tflite: Path, images: Path, labels: Path) -> list[Visit]:
    """Six users, four models: two uploads and two digits samples (one link per distinct request)."""
    return [
        Visit("keras upload", "?sample=digits_cnn", Upload(keras, images, labels)),
        Visit("tflite upload, per-channel off", "?sample=digits_cnn", Upload(tflite, images, labels),
              what_ifs=("per_channel",)),
        Visit("digits, what-ifs", "?sample=digits_cnn&modes=float32,int8,int16x8&cal=10",
              what_ifs=("mode.int16x8", "cal_count")),
        Visit("digits, full dataset", "?sample=digits_cnn&modes=float32,float16,int8&cal=5", evaluate=True),
        Visit("digits_mobilenet", "?sample=digits_mobilenet&modes=float32,float16,dynamic_range"),
        Visit("digits_mobilenet, leaves mid-run", "?sample=digits_mobilenet&cal=50", leave=True),  # 6 variants to go
    ]


def test_six_sessions_on_four_models_get_their_own_numbers_within_the_memory_bound(model_files, image_dir,
                                                                                      labels_file, tmp_path):
    if CHROMIUM is None:
        pytest.fail("chromium is not installed: apt-get install -y chromium (done by .ci/run)")
    plans = visits(model_files["keras"], model_files["tflite"], zipped(image_dir, tmp_path / "colours.zip"),
                   labels_file)
    datasets = tmp_path / "datasets"
    shutil.copytree(REPO / "sample_models" / "digits_images", datasets / "digits_images")
    env = {**BOUND.env(), "QUANT_CACHE_DIR": tempfile.mkdtemp(prefix="qw-load-cache-"),
           "QW_SESSION_ROOT": tempfile.mkdtemp(prefix="qw-load-sessions-"), "QW_DATASETS_DIR": str(datasets),
           "QW_ABANDON_S": str(ABANDON_S)}
    with streamlit_server(env) as server:
        warm_up(server.url, "?sample=digits_cnn")
        with HealthProbe(server.url) as health, TreeWatch(server.process.pid) as tree:
            outcomes = run_visits(server.url, plans, timeout_s=600)
            time.sleep(2)  # the last request's worker is checked in and the LRU one closed
            idle_workers = tree.workers()
        assert server.process.poll() is None  # the server survived
        server_log = server.log()
        killed = abandoned_workers(server_log)

    for outcome in outcomes:
        if outcome.visit.leave:
            assert not outcome.errors, (outcome.visit.name, outcome.errors)
            continue
        want = expected_rows(outcome.visit, outcome.calibration, images=image_dir)
        assert not unexpected_errors(outcome, want), (outcome.visit.name, outcome.errors)
        assert list(outcome.rows) == list(want), outcome.visit.name
        for name, row in want.items():
            assert {k: outcome.rows[name][k] for k in row} == row, (outcome.visit.name, name)
    assert next(o for o in outcomes if "cal_count" in o.visit.what_ifs).calibration == 1

    evaluated = next(o for o in outcomes if o.visit.evaluate)
    assert evaluated.evaluation is not None
    assert evaluated.evaluation["evaluated"] == 120 and not evaluated.evaluation["skipped"]
    scores = {v["name"]: v for v in evaluated.evaluation["variants"]}
    assert set(scores) == set(evaluated.rows)  # the dataset is the compared images: the same accuracies
    for name, row in evaluated.rows.items():
        assert ACCURACY.format_number(scores[name]["accuracy"]) == row["accuracy"], name

    left = next(o for o in outcomes if o.visit.leave)
    assert left.left_at is not None
    assert len(killed) == 1, (killed, server_log[-4000:])  # exactly the run whose browser left
    pid, when = killed[0]
    assert pid in tree.workers_seen and not alive(pid)
    assert when - left.left_at < FREED_WITHIN_S, when - left.left_at

    stats = health.summary()
    log.info("health %s; peak RSS %.0f MB (server %.0f, largest worker %.0f) under %s; workers <= %d, %d after; "
             "worker of the session that left killed %.1f s after", stats, tree.peak_total_mb, tree.peak_server_mb,
             tree.peak_worker_mb, BOUND.words, tree.max_workers, len(idle_workers), when - left.left_at)
    assert stats["count"] >= 20 and stats["max"] <= 1.0, stats
    assert tree.max_workers <= BOUND.max_workers, tree.max_workers
    assert len(tree.workers_seen) > BOUND.warm_workers + 1, tree.workers_seen  # 4 models: more than are kept
    assert len(idle_workers) <= BOUND.warm_workers + 1, idle_workers  # the least recently used were closed
    assert tree.peak_server_mb < BOUND.server_mb, tree.peak_server_mb
    assert tree.peak_total_mb < BOUND.total_mb, (tree.peak_total_mb, BOUND.words)
